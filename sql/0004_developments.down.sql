DROP TABLE property.developments;
