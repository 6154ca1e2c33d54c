-- When each outbox entry was written, so the projector can report how far the cache trails the base tables:
-- the age of the oldest entry not applied yet. clock_timestamp() (not now()) stamps the statement that wrote
-- the entry rather than the start of its transaction, so a long writer transaction is not counted as lag
-- before it writes anything. Existing entries get the time of this migration.
ALTER TABLE explore.change_outbox ADD COLUMN created_at timestamptz NOT NULL DEFAULT clock_timestamp();
