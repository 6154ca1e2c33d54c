-- Two roles:
--   explore_reader     what the Explore side uses: USAGE on schema explore and SELECT on its relations, nothing else.
--   explore_projector  what the projector uses: reads the base tables, writes the explore schema.
-- Roles are cluster-wide, so they are created only when absent (another database of the cluster may have created
-- them already, possibly at the same moment). Both are NOLOGIN: operators grant them to login roles.
DO $$
BEGIN
    BEGIN
        CREATE ROLE explore_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    BEGIN
        CREATE ROLE explore_projector NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
END;
$$;

GRANT USAGE ON SCHEMA explore TO explore_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA explore TO explore_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA explore GRANT SELECT ON TABLES TO explore_reader;

GRANT USAGE ON SCHEMA core, property, wizard TO explore_projector;
GRANT SELECT ON ALL TABLES IN SCHEMA core, property, wizard TO explore_projector;
GRANT USAGE, CREATE ON SCHEMA explore TO explore_projector;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA explore TO explore_projector;
ALTER DEFAULT PRIVILEGES IN SCHEMA explore GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO explore_projector;
