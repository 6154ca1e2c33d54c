CREATE INDEX listings_projection_price_from_idx ON explore.listings_projection (price_from, id);
ALTER TABLE explore.listings_projection RESET (fillfactor);
