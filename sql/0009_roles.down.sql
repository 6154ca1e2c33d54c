-- Revokes this database's grants and leaves the roles: roles are cluster-wide, other databases of the cluster
-- (other environments, other test databases) may still use them, and DROP ROLE fails while any database holds a
-- grant to them.
ALTER DEFAULT PRIVILEGES IN SCHEMA explore REVOKE SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES FROM explore_projector;
REVOKE SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA explore FROM explore_projector;
REVOKE USAGE, CREATE ON SCHEMA explore FROM explore_projector;
REVOKE SELECT ON ALL TABLES IN SCHEMA core, property, wizard FROM explore_projector;
REVOKE USAGE ON SCHEMA core, property, wizard FROM explore_projector;

ALTER DEFAULT PRIVILEGES IN SCHEMA explore REVOKE SELECT ON TABLES FROM explore_reader;
REVOKE SELECT ON ALL TABLES IN SCHEMA explore FROM explore_reader;
REVOKE USAGE ON SCHEMA explore FROM explore_reader;
