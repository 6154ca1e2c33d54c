DROP TABLE property.listings;
