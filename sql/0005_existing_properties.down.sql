DROP TABLE property.existing_properties;
