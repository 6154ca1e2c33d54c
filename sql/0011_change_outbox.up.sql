-- The change feed: statement-level triggers on the base tables append one outbox entry per changed key, in the
-- writing transaction, so an entry exists exactly when its change commits. `xid` is the writer's top-level
-- transaction id; the projector uses it with pg_current_snapshot() to read entries in commit-visibility order,
-- so an entry whose transaction commits late is never skipped (Sources/Projector/OutboxFeedStateMachine.swift).
--
-- `key` is the changed row's listing id, except for source 'locations' where it is the location id (the
-- projector expands it to every listing at that location). The projector deletes entries once applied.
CREATE TABLE explore.change_outbox (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid    xid8   NOT NULL DEFAULT pg_current_xact_id(),
    source text   NOT NULL CHECK (source IN ('listings', 'developments', 'existing_properties', 'media', 'locations')),
    key    bigint NOT NULL
)
-- A queue: rows are deleted soon after they are written, so vacuum it by dead-row count, not by table size.
WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

CREATE INDEX change_outbox_xid_idx ON explore.change_outbox (xid, id);

-- Explore readers see the read model, not the feed's internals.
REVOKE SELECT ON explore.change_outbox FROM explore_reader;

-- One trigger function for every base table: TG_ARGV[0] names the key column. It runs as its owner so writers
-- need no privilege on the explore schema. NOTIFY is coalesced to one per transaction with a transaction-local
-- setting: NOTIFY serializes committing transactions on a global lock, so fewer of them costs writers less.
-- The notification only wakes the projector; the outbox is the truth.
CREATE FUNCTION explore.capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    appended bigint := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO explore.change_outbox (source, key) SELECT DISTINCT %L, %I FROM new_rows',
                       TG_TABLE_NAME, TG_ARGV[0]);
    ELSIF TG_OP = 'UPDATE' THEN
        EXECUTE format('INSERT INTO explore.change_outbox (source, key) '
                       'SELECT %L, %I FROM new_rows UNION SELECT %L, %I FROM old_rows',
                       TG_TABLE_NAME, TG_ARGV[0], TG_TABLE_NAME, TG_ARGV[0]);
    ELSE
        EXECUTE format('INSERT INTO explore.change_outbox (source, key) SELECT DISTINCT %L, %I FROM old_rows',
                       TG_TABLE_NAME, TG_ARGV[0]);
    END IF;
    GET DIAGNOSTICS appended = ROW_COUNT;
    IF appended > 0 AND current_setting('explore.change_notified', true) IS DISTINCT FROM 'on' THEN
        PERFORM set_config('explore.change_notified', 'on', true);
        PERFORM pg_notify('explore_changes', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER listings_capture_insert AFTER INSERT ON property.listings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('id');
CREATE TRIGGER listings_capture_update AFTER UPDATE ON property.listings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION explore.capture_change('id');
CREATE TRIGGER listings_capture_delete AFTER DELETE ON property.listings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('id');

CREATE TRIGGER developments_capture_insert AFTER INSERT ON property.developments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('listing_id');
CREATE TRIGGER developments_capture_update AFTER UPDATE ON property.developments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION explore.capture_change('listing_id');
CREATE TRIGGER developments_capture_delete AFTER DELETE ON property.developments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('listing_id');

CREATE TRIGGER existing_properties_capture_insert AFTER INSERT ON property.existing_properties
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('listing_id');
CREATE TRIGGER existing_properties_capture_update AFTER UPDATE ON property.existing_properties
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION explore.capture_change('listing_id');
CREATE TRIGGER existing_properties_capture_delete AFTER DELETE ON property.existing_properties
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('listing_id');

CREATE TRIGGER media_capture_insert AFTER INSERT ON property.media
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('listing_id');
CREATE TRIGGER media_capture_update AFTER UPDATE ON property.media
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION explore.capture_change('listing_id');
CREATE TRIGGER media_capture_delete AFTER DELETE ON property.media
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('listing_id');

CREATE TRIGGER locations_capture_insert AFTER INSERT ON property.locations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('id');
CREATE TRIGGER locations_capture_update AFTER UPDATE ON property.locations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION explore.capture_change('id');
CREATE TRIGGER locations_capture_delete AFTER DELETE ON property.locations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('id');
