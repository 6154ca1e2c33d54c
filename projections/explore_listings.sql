-- The defining query of the explore_listings read model: one row per live listing, prices coalesced across
-- listing types, the primary image and the location's names joined in. Missing optional rows (no type-specific
-- row, no primary image, a location that no longer exists) give NULLs, never a lost listing.
--
-- {{restriction:COLUMN}} marks where the query can be restricted to some listings; COLUMN holds the listing id
-- of that table's rows. For the whole read model every marker is replaced by nothing; to recompute only some
-- listings each becomes `AND COLUMN = ANY($1::bigint[])`, so every table is read through its index for just
-- those listings (a filter on listings alone lets the planner hash-join whole tables at a million listings).
-- Sources/Projector/ProjectionDefinition.swift embeds this text (a test keeps the two identical), and
-- sql/0010_explore_projection.up.sql creates explore.explore_listings_mv from it (a test compares the server's
-- parsed definitions).
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
LEFT JOIN property.developments d ON d.listing_id = l.id {{restriction:d.listing_id}}
LEFT JOIN property.existing_properties e ON e.listing_id = l.id {{restriction:e.listing_id}}
LEFT JOIN property.media m ON m.listing_id = l.id AND m.is_primary {{restriction:m.listing_id}}
LEFT JOIN property.locations loc ON loc.id = l.location_id
WHERE l.status IN ('published', 'active')
    {{restriction:l.id}}
