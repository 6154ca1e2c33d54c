-- Existing homes (resale or rental): one price, rooms and floor area.
CREATE TABLE property.existing_properties (
    listing_id              bigint  PRIMARY KEY,
    listing_type            text    NOT NULL DEFAULT 'existing' CHECK (listing_type = 'existing'),
    price                   bigint  NOT NULL CHECK (price >= 0),
    bedrooms                integer NOT NULL CHECK (bedrooms BETWEEN 0 AND 100),
    bathrooms               integer NOT NULL CHECK (bathrooms BETWEEN 0 AND 100),
    floor_area_square_meters integer CHECK (floor_area_square_meters > 0),
    FOREIGN KEY (listing_id, listing_type) REFERENCES property.listings (id, type) ON DELETE CASCADE
);
