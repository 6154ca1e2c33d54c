-- The materialized explore read model. explore.listings_projection holds the rows of the defining query
-- (projections/explore_listings.sql), kept current incrementally by the projector; explore.checkpoint records,
-- per feed, the change-feed position the projection reflects, written in the same transaction as the rows.
-- explore.explore_listings_mv is the same query as a plain materialized view: the REFRESH MATERIALIZED VIEW
-- CONCURRENTLY baseline the benchmark compares incremental refresh against (CONCURRENTLY needs the unique index).
CREATE TABLE explore.listings_projection (
    id                bigint      PRIMARY KEY,
    listing_type      text        NOT NULL,
    status            text        NOT NULL,
    title             text        NOT NULL,
    location_id       bigint      NOT NULL,
    price_from        bigint,
    price_to          bigint,
    bedrooms          integer,
    bathrooms         integer,
    primary_image_url text,
    city              text,
    area              text,
    created_at        timestamptz NOT NULL
);

-- Readers filter by place and price and sort by recency; the projector finds the listings of a changed location.
CREATE INDEX listings_projection_location_id_idx ON explore.listings_projection (location_id);
CREATE INDEX listings_projection_city_area_idx ON explore.listings_projection (city, area);
CREATE INDEX listings_projection_price_from_idx ON explore.listings_projection (price_from, id);
CREATE INDEX listings_projection_created_at_idx ON explore.listings_projection (created_at DESC, id DESC);

-- A feed position (see Sources/Projector/OutboxFeedStateMachine.swift): every outbox entry of a transaction
-- visible in low_snapshot is applied; when target_snapshot is set, the entries of transactions visible in
-- target_snapshot but not in low_snapshot are applied up to and including outbox id last_id.
CREATE TABLE explore.checkpoint (
    feed            text        PRIMARY KEY CHECK (length(feed) BETWEEN 1 AND 100),
    low_snapshot    pg_snapshot NOT NULL,
    target_snapshot pg_snapshot,
    last_id         bigint      NOT NULL DEFAULT 0 CHECK (last_id >= 0),
    applied_changes bigint      NOT NULL DEFAULT 0 CHECK (applied_changes >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (target_snapshot IS NOT NULL OR last_id = 0)
);

CREATE MATERIALIZED VIEW explore.explore_listings_mv AS
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

CREATE UNIQUE INDEX explore_listings_mv_id_idx ON explore.explore_listings_mv (id);
