-- TRUNCATE fires no row or transition-table trigger, so the capture triggers of 0011 never see it: the rows it
-- removes would stay in the projection (and the cache) for good. A statement-level TRUNCATE trigger on every
-- base table the defining query reads asks the projector for a full rebuild instead, in the truncating
-- transaction; a running projector picks the request up within about a second, a stopped one when it starts.
-- With no projection built yet there is nothing to ask (the first build reads the base tables anyway).
CREATE FUNCTION explore.request_rebuild_after_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE explore.projection_state SET rebuild_requested_at = clock_timestamp()
    WHERE projection = 'explore_listings';
    RETURN NULL;
END;
$$;

CREATE TRIGGER listings_truncate_rebuild AFTER TRUNCATE ON property.listings
    FOR EACH STATEMENT EXECUTE FUNCTION explore.request_rebuild_after_truncate();
CREATE TRIGGER developments_truncate_rebuild AFTER TRUNCATE ON property.developments
    FOR EACH STATEMENT EXECUTE FUNCTION explore.request_rebuild_after_truncate();
CREATE TRIGGER existing_properties_truncate_rebuild AFTER TRUNCATE ON property.existing_properties
    FOR EACH STATEMENT EXECUTE FUNCTION explore.request_rebuild_after_truncate();
CREATE TRIGGER media_truncate_rebuild AFTER TRUNCATE ON property.media
    FOR EACH STATEMENT EXECUTE FUNCTION explore.request_rebuild_after_truncate();
CREATE TRIGGER locations_truncate_rebuild AFTER TRUNCATE ON property.locations
    FOR EACH STATEMENT EXECUTE FUNCTION explore.request_rebuild_after_truncate();
