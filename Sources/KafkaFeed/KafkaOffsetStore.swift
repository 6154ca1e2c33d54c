public import ExploreQuery
import Kafka
public import Postgres
public import Projector

/// The Kafka feed's SQL: offsets per (topic, partition) in `explore.kafka_offsets`, written in the same
/// transaction as the projection rows they cover; the consistent bootstrap snapshot; outbox pruning.
///
/// Owns no connection: every call runs on the connection it is given, which must have a single owner.
public enum KafkaOffsetStore {
    /// What one applied batch changed.
    public struct AppliedBatch: Sendable, Hashable {
        /// The changes to apply to the cache after commit.
        public var changes: ListingChangeBatch
        /// Listings recomputed (after expanding locations).
        public var recomputedListings: Int
        /// The checkpoint's applied-change count after the batch.
        public var appliedChanges: Int64
        /// The listings recomputed (a rebuild in progress recomputes them into its side table too).
        public var listingIDs: [Int64] = []
    }

    /// The cache, the checkpoint's applied-change count and the stored offsets, read in one snapshot.
    public struct Bootstrap {
        /// The projection table's rows.
        public var store: ExploreStore
        /// The checkpoint's applied-change count the rows reflect.
        public var appliedChanges: Int64
        /// Next offset to consume per partition of the topic; partitions never stored are absent.
        public var offsets: [Int32: Int64]
    }

    /// Reads the projection, the checkpoint and the topic's offsets in one REPEATABLE READ snapshot (rows by COPY).
    /// - Throws: `.notBuilt` without a checkpoint; `.database` for PostgreSQL failures.
    public static func bootstrap(
        topic: String, on connection: PostgresConnection, feed: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) -> Bootstrap {
        do {
            try connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let checkpoint = try ProjectionStore.checkpoint(on: connection, feed: feed)
                let offsets = try self.offsets(topic: topic, on: connection, feed: feed)
                let rows = try ProjectionStore.readRowsForStore(on: connection)
                try connection.executeScript("COMMIT")
                return Bootstrap(
                    store: ProjectionStore.makeStore(rows), appliedChanges: checkpoint.appliedChanges, offsets: offsets)
            } catch {
                try? connection.executeScript("ROLLBACK")
                throw error
            }
        } catch {
            throw ProjectorError.database("bootstrapping the Kafka feed failed", error)
        }
    }

    /// The stored next offsets of `topic`'s partitions.
    public static func offsets(
        topic: String, on connection: PostgresConnection, feed: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) -> [Int32: Int64] {
        do {
            var offsets: [Int32: Int64] = [:]
            for row in try connection.query(
                "SELECT partition, next_offset FROM explore.kafka_offsets WHERE feed = $1 AND topic = $2",
                [feed, topic])
            {
                offsets[try row.decode(0, as: Int32.self)] = try row.decode(1, as: Int64.self)
            }
            return offsets
        } catch {
            throw ProjectorError.database("reading the Kafka offsets failed", error)
        }
    }

    /// Applies one batch in one transaction: recomputes the affected listings from the defining query, stores
    /// the partitions' next offsets (never moving one back) and adds the applicable events to the checkpoint's
    /// applied-change count. A crash anywhere leaves either all of it or none.
    ///
    /// - Parameter beforeCommit: called inside the transaction just before COMMIT (tests inject faults here).
    /// - Throws: `.notBuilt` when the checkpoint row is gone; `.database` for PostgreSQL failures. Nothing is
    ///   changed when it throws.
    public static func apply(
        _ batch: KafkaFeedBatch.Contents, on connection: PostgresConnection,
        feed: String = ProjectionDefinition.feedName, beforeCommit: () throws -> Void = {}
    ) throws(ProjectorError) -> AppliedBatch {
        do {
            return try connection.transaction { () throws -> AppliedBatch in
                let (changes, recomputed) = try ProjectionStore.recomputeAffected(
                    listingIDs: batch.listingIDs, locationIDs: batch.locationIDs, on: connection)
                let positions = batch.nextOffsets.sorted {
                    ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition)
                }
                if !positions.isEmpty {
                    try connection.query("""
                        INSERT INTO explore.kafka_offsets AS k (feed, topic, partition, next_offset)
                        SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
                        ON CONFLICT (feed, topic, partition) DO UPDATE
                        SET next_offset = GREATEST(k.next_offset, EXCLUDED.next_offset), updated_at = now()
                        """, [feed, textArray(positions.map(\.key.topic)),
                              ProjectionStore.int8Array(positions.map { Int64($0.key.partition) }),
                              ProjectionStore.int8Array(positions.map(\.value))])
                }
                let counted = try connection.query("""
                    UPDATE explore.checkpoint SET applied_changes = applied_changes + $2, updated_at = now()
                    WHERE feed = $1 RETURNING applied_changes
                    """, [feed, Int64(batch.applicableEvents)])
                guard let applied = try counted.first?.decode(0, as: Int64.self) else {
                    throw ProjectorError(code: .notBuilt, message: "the projection '\(feed)' has no checkpoint")
                }
                try beforeCommit()
                return AppliedBatch(changes: changes, recomputedListings: recomputed.count, appliedChanges: applied,
                                    listingIDs: recomputed)
            }
        } catch {
            throw ProjectorError.database("applying a Kafka batch failed", error)
        }
    }

    /// Deletes up to `limit` outbox entries of transactions committed before the statement began; returns how
    /// many it deleted (fewer than `limit`: nothing more to prune now).
    ///
    /// While the Kafka feed owns the projection the base-table triggers still append to the outbox and nothing
    /// reads it, so without pruning it would grow without bound. The outbox feed's checkpoint is left alone: if
    /// the service is switched back to the outbox feed, it applies whatever the outbox still holds (the changes
    /// committed since the last prune); changes pruned before Kafka delivered them are not replayed, so switch
    /// back only once the Kafka feed has caught up (or rebuild). Deleting in small chunks keeps each statement
    /// short; nothing else deletes these rows while the Kafka feed holds the feed lock.
    @discardableResult
    public static func pruneOutbox(on connection: PostgresConnection, limit: Int = 10_000) throws(ProjectorError)
        -> Int
    {
        do {
            return try connection.query("""
                DELETE FROM explore.change_outbox WHERE id IN (
                    SELECT id FROM explore.change_outbox
                    WHERE pg_visible_in_snapshot(xid, pg_current_snapshot()) ORDER BY id LIMIT $1)
                """, [Int64(max(1, limit))]).affectedRows
        } catch {
            throw ProjectorError.database("pruning the outbox failed", error)
        }
    }

    /// A `text[]` literal with every element quoted.
    static func textArray(_ values: [String]) -> String {
        "{" + values.map { value in
            "\"" + value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
        }.joined(separator: ",") + "}"
    }
}
