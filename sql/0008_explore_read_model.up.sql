-- Explore read model: the one relation Explore reads. Explore never queries the base tables; this view hides the
-- differences between listing types (prices are coalesced into a range) and shows only live listings.
CREATE SCHEMA explore;

CREATE VIEW explore.explore_listings AS
SELECT
    l.id,
    l.type                          AS listing_type,
    l.status,
    l.title,
    l.location_id,
    COALESCE(d.price_from, e.price) AS price_from,
    COALESCE(d.price_to, e.price)   AS price_to,
    e.bedrooms,
    e.bathrooms,
    m.url                           AS primary_image_url,
    loc.city,
    loc.area,
    l.created_at
FROM property.listings l
LEFT JOIN property.developments d ON d.listing_id = l.id
LEFT JOIN property.existing_properties e ON e.listing_id = l.id
LEFT JOIN property.media m ON m.listing_id = l.id AND m.is_primary
LEFT JOIN property.locations loc ON loc.id = l.location_id
WHERE l.status IN ('published', 'active');
