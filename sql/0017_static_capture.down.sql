-- Back to the dynamic statements of 0011.
CREATE OR REPLACE FUNCTION explore.capture_change() RETURNS trigger
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
