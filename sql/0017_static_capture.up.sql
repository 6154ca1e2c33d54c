-- The capture trigger of 0011 built its INSERT with EXECUTE format(...), so every writing statement on a base
-- table parsed and planned that INSERT again. Static statements are planned once per session and trigger (PL/pgSQL
-- compiles a trigger function per trigger, transition tables included): 32 writers committing one-row updates on
-- a 2-core machine went 13-42 % faster (pgbench, alternating runs; figures in README.md). The key column is
-- still the trigger's argument; an argument this function does not know is an error, not a guess.
CREATE OR REPLACE FUNCTION explore.capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    appended bigint := 0;
BEGIN
    IF TG_ARGV[0] = 'id' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO explore.change_outbox (source, key) SELECT DISTINCT TG_TABLE_NAME, id FROM new_rows;
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO explore.change_outbox (source, key)
            SELECT TG_TABLE_NAME, id FROM new_rows UNION SELECT TG_TABLE_NAME, id FROM old_rows;
        ELSE
            INSERT INTO explore.change_outbox (source, key) SELECT DISTINCT TG_TABLE_NAME, id FROM old_rows;
        END IF;
    ELSIF TG_ARGV[0] = 'listing_id' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO explore.change_outbox (source, key) SELECT DISTINCT TG_TABLE_NAME, listing_id FROM new_rows;
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO explore.change_outbox (source, key)
            SELECT TG_TABLE_NAME, listing_id FROM new_rows UNION SELECT TG_TABLE_NAME, listing_id FROM old_rows;
        ELSE
            INSERT INTO explore.change_outbox (source, key) SELECT DISTINCT TG_TABLE_NAME, listing_id FROM old_rows;
        END IF;
    ELSE
        RAISE EXCEPTION 'explore.capture_change: unknown key column % on %.%', TG_ARGV[0], TG_TABLE_SCHEMA,
            TG_TABLE_NAME;
    END IF;
    GET DIAGNOSTICS appended = ROW_COUNT;
    IF appended > 0 AND current_setting('explore.change_notified', true) IS DISTINCT FROM 'on' THEN
        PERFORM set_config('explore.change_notified', 'on', true);
        PERFORM pg_notify('explore_changes', '');
    END IF;
    RETURN NULL;
END;
$$;
