-- Which version of a projection's definition its table was built with, and the state of a full rebuild.
--
-- The service compares `version` with the version its binary ships (Sources/Projector/ProjectionQuery.swift);
-- when they differ it rebuilds the table beside the old one in the background (expand, backfill, switch,
-- contract) while serving the old one, and records the new version in the transaction that swaps the tables.
-- `rebuild_requested_at` lets `explore-projector rebuild --database-url` ask a running projector for a rebuild;
-- the rebuild_* progress columns let it follow one from another process.
CREATE TABLE explore.projection_state (
    projection           text        PRIMARY KEY CHECK (length(projection) BETWEEN 1 AND 100),
    version              integer     NOT NULL CHECK (version >= 0),
    built_at             timestamptz NOT NULL DEFAULT now(),
    rebuild_requested_at timestamptz,
    rebuild_phase        text        CHECK (rebuild_phase IN ('building', 'catchingUp', 'swapping', 'loadingCache')),
    rebuild_rows_done    bigint      NOT NULL DEFAULT 0 CHECK (rebuild_rows_done >= 0),
    rebuild_rows_total   bigint      CHECK (rebuild_rows_total >= 0),
    rebuild_started_at   timestamptz,
    rebuild_finished_at  timestamptz,
    rebuild_error        text
);

-- A projection built before versions were recorded was built with version 1 (the first definition).
INSERT INTO explore.projection_state (projection, version)
SELECT feed, 1 FROM explore.checkpoint WHERE feed = 'explore_listings';

-- Projection internals, like the outbox: not for readers.
REVOKE SELECT ON explore.projection_state FROM explore_reader;
