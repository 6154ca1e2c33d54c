DROP TABLE property.locations;
DROP SCHEMA property;
