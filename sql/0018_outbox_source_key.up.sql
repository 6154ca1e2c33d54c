-- Pending outbox entries by table and key. A column recompute (projections/README.md) updates a listing's price or
-- image columns only when no change from another table is pending for it, and looks that up here for each listing
-- of the batch: without the index each batch scanned the whole outbox, which during a catch-up of 667,000 entries
-- made a batch of 5,000 price edits slower (185-232 ms) than recomputing the rows whole (132-174 ms); with it,
-- 86-115 ms against 110-144 ms. Writers pay one more index entry per outbox row: 32 pgbench clients updating one
-- price each ran 6,391-7,618 transactions/s with it and 6,491-7,996 without, alternating runs.
CREATE INDEX change_outbox_source_key_idx ON explore.change_outbox (source, key);
