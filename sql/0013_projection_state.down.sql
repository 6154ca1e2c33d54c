DROP TABLE IF EXISTS explore.listings_projection_rebuild;
DROP TABLE explore.projection_state;
