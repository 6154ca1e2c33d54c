-- New-build developments: a price range instead of one price, built by an organization.
CREATE TABLE property.developments (
    listing_id                bigint  PRIMARY KEY,
    listing_type              text    NOT NULL DEFAULT 'development' CHECK (listing_type = 'development'),
    price_from                bigint  NOT NULL CHECK (price_from >= 0),
    price_to                  bigint  NOT NULL,
    units_total               integer CHECK (units_total > 0),
    completion_year           integer CHECK (completion_year BETWEEN 1900 AND 2200),
    developer_organization_id bigint  REFERENCES core.organizations (id) ON DELETE SET NULL,
    CHECK (price_from <= price_to),
    FOREIGN KEY (listing_id, listing_type) REFERENCES property.listings (id, type) ON DELETE CASCADE
);

CREATE INDEX developments_developer_organization_id_idx ON property.developments (developer_organization_id);
