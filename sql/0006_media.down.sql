DROP TABLE property.media;
