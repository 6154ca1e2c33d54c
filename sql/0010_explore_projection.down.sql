DROP INDEX explore.explore_listings_mv_id_idx;
DROP MATERIALIZED VIEW explore.explore_listings_mv;
DROP TABLE explore.checkpoint;
DROP TABLE explore.listings_projection;
