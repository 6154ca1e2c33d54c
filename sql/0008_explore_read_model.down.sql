DROP VIEW explore.explore_listings;
DROP SCHEMA explore;
