-- Kafka feed positions: per topic and partition, the next offset to consume, written by the Kafka feed in the
-- same transaction as the projection rows those offsets cover, so a crash neither loses nor double-applies a
-- change (re-applying would be harmless anyway: batches recompute from the base tables). The feed resumes from
-- here on start, not from the broker's committed offsets (it commits those too, for lag tooling only).
CREATE TABLE explore.kafka_offsets (
    feed        text        NOT NULL REFERENCES explore.checkpoint (feed) ON DELETE CASCADE,
    topic       text        NOT NULL CHECK (length(topic) BETWEEN 1 AND 249),
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, topic, partition)
);

-- The projector writes it (explicit, although 0009's default privileges already grant it); Explore readers see
-- the read model, not the feed's internals.
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON explore.kafka_offsets TO explore_projector;
REVOKE SELECT ON explore.kafka_offsets FROM explore_reader;
