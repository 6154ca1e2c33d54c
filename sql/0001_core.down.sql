DROP TABLE core.users;
DROP TABLE core.organizations;
DROP SCHEMA core;
