public import ExploreQuery
public import Postgres
import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The projection's SQL: initial build, feed reads, incremental refresh, cache bootstrap and verification.
///
/// Owns no connection: every call runs on the connection it is given, which must have a single owner.
public enum ProjectionStore {
    /// What one applied batch changed.
    public struct AppliedBatch: Sendable, Hashable {
        /// The changes to apply to the cache after commit (unchanged rows are left out).
        public var changes: ListingChangeBatch
        /// Listings recomputed (after expanding locations).
        public var recomputedListings: Int
        /// Outbox entries consumed.
        public var consumedEntries: Int
        /// The listings recomputed (a rebuild in progress recomputes them into its side table too).
        public var listingIDs: [Int64] = []
    }

    /// The checkpoint row of a feed.
    public struct Checkpoint: Sendable, Hashable {
        /// Where the feed stands.
        public var position: FeedPosition
        /// Outbox entries applied since the projection was built (the initial build counts the ones it covered).
        public var appliedChanges: Int64
    }

    // MARK: Build

    /// Builds the projection from the defining query when the feed has no checkpoint yet; returns whether it did.
    ///
    /// Runs in one REPEATABLE READ transaction: the rows, the checkpoint (that transaction's snapshot), the
    /// pruning of the entries that snapshot covers and the projection's version row are consistent with each other.
    @discardableResult
    public static func buildIfNeeded(
        on connection: PostgresConnection, feed: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) -> Bool {
        do {
            try connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ")
            do {
                let existing = try connection.query(
                    "SELECT 1 FROM explore.checkpoint WHERE feed = $1 FOR UPDATE", [feed])
                if !existing.isEmpty {
                    try connection.executeScript("COMMIT")
                    return false
                }
                let columns = ProjectionDefinition.columns.joined(separator: ", ")
                try connection.query("DELETE FROM explore.listings_projection")
                try connection.query("""
                    INSERT INTO explore.listings_projection (\(columns))
                    SELECT \(columns) FROM (\(ProjectionDefinition.fullQuery)) AS definition
                    """)
                let pruned = try connection.query("""
                    DELETE FROM explore.change_outbox WHERE pg_visible_in_snapshot(xid, pg_current_snapshot())
                    """).affectedRows
                try connection.query("""
                    INSERT INTO explore.checkpoint (feed, low_snapshot, applied_changes)
                    VALUES ($1, pg_current_snapshot(), $2)
                    """, [feed, Int64(pruned)])
                // The state row exists from the build on, so a TRUNCATE right after it finds a row to record its
                // rebuild request in (migration 0016's trigger only updates one).
                try RebuildStore.recordVersionIfAbsent(
                    ProjectionQuery.shipped.version, on: connection, projection: feed)
                try connection.executeScript("COMMIT")
                return true
            } catch {
                try? connection.executeScript("ROLLBACK")
                throw error
            }
        } catch {
            throw ProjectorError.database("building the projection failed", error)
        }
    }

    // MARK: Feed

    /// Reads the feed's checkpoint.
    /// - Throws: `.notBuilt` when there is none.
    public static func checkpoint(
        on connection: PostgresConnection, feed: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) -> Checkpoint {
        let result: PostgresResult
        do {
            result = try connection.query("""
                SELECT low_snapshot::text, target_snapshot::text, last_id, applied_changes
                FROM explore.checkpoint WHERE feed = $1
                """, [feed])
        } catch {
            throw ProjectorError.database("reading the checkpoint failed", error)
        }
        guard let row = result.first else {
            throw ProjectorError(code: .notBuilt, message: "the projection '\(feed)' has not been built")
        }
        let low = try TransactionSnapshot(text: row[0] ?? "")
        let target = try row[1].map { text throws(ProjectorError) in try TransactionSnapshot(text: text) }
        guard let lastID = row[2].flatMap({ Int64($0) }), let applied = row[3].flatMap({ Int64($0) }) else {
            throw ProjectorError(code: .invalidRow, message: "malformed checkpoint row")
        }
        return Checkpoint(position: FeedPosition(low: low, target: target, lastID: lastID), appliedChanges: applied)
    }

    /// Runs a feed read: the entries of the request's window, and the window's closing snapshot, taken by the
    /// same statement when the request has none.
    public static func fetch(
        _ request: OutboxFeedStateMachine.FetchRequest, on connection: PostgresConnection
    ) throws(ProjectorError) -> OutboxFeedStateMachine.FetchResult {
        let result: PostgresResult
        do {
            // pg_current_snapshot() is the statement's own snapshot, so every row this statement can see is
            // visible in it, and every transaction visible in it has committed. The rows come in no particular
            // order (the state machine sorts them): a second sort of a 10,000-entry page cost 2 ms.
            let read = """
                WITH w AS (SELECT COALESCE($2::pg_snapshot, pg_current_snapshot()) AS target)
                SELECT w.target::text, o.id, o.xid::text, o.source, o.key
                FROM w LEFT JOIN LATERAL (
                    SELECT id, xid, source, key FROM explore.change_outbox
                    WHERE xid >= pg_snapshot_xmin($1::pg_snapshot) AND xid < pg_snapshot_xmax(w.target)
                      AND pg_visible_in_snapshot(xid, w.target) AND NOT pg_visible_in_snapshot(xid, $1::pg_snapshot)
                      AND id > $3
                    ORDER BY id LIMIT $4
                ) o ON true
                """
            let parameters: [(any PostgresEncodable)?] = [
                request.low.description, request.target?.description, request.afterID, Int64(request.limit),
            ]
            if request.afterID > 0 {
                // A later page of a large window (a backlog): left to choose, PostgreSQL reads every entry of the
                // window through the xid index and sorts them all for each page (57-89 ms a page with 200,000
                // queued). Walking the primary key from the last id read finds the page's entries in order, in
                // 10-12 ms. The first page of a window keeps the planner's choice: the primary key from its start
                // passes the index entries of every entry deleted since the last vacuum.
                result = try connection.transaction {
                    try connection.executeScript("""
                        SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off;
                        SET LOCAL max_parallel_workers_per_gather = 0
                        """)
                    return try connection.query(read, parameters)
                }
            } else {
                result = try connection.query(read, parameters)
            }
        } catch {
            throw ProjectorError.database("reading the outbox failed", error)
        }
        guard let first = result.first, let targetText = first[0] else {
            throw ProjectorError(code: .invalidRow, message: "the outbox read returned no snapshot")
        }
        let target = try TransactionSnapshot(text: targetText)
        var entries: [OutboxEntry] = []
        entries.reserveCapacity(result.count)
        for row in result where row[1] != nil {
            guard let id = row[1].flatMap({ Int64($0) }), let xid = row[2].flatMap({ UInt64($0) }),
                  let source = row[3].flatMap({ ProjectionDefinition.Source(rawValue: $0) }),
                  let key = row[4].flatMap({ Int64($0) })
            else {
                throw ProjectorError(code: .invalidRow, message: "malformed outbox entry")
            }
            entries.append(OutboxEntry(id: id, xid: xid, source: source, key: key))
        }
        return OutboxFeedStateMachine.FetchResult(target: target, entries: entries, limit: request.limit)
    }

    // MARK: Incremental refresh

    /// Applies one batch in one transaction: recomputes the affected listings from the defining query, upserts
    /// the rows that exist, deletes those that no longer appear, deletes the consumed outbox entries and moves
    /// the checkpoint from `expected` to `position`. A crash anywhere leaves either all of it or none.
    ///
    /// With `position == expected` the batch only consumes its entries: that is how the parts of a split batch
    /// but the last are applied (see ``ChangeSet/split(into:minimumKeys:)``), each committed before the last part
    /// moves the position past them all.
    ///
    /// - Parameters:
    ///   - beforeCheckpoint: called inside the transaction once the listings are recomputed, before the
    ///     checkpoint row is locked by its update; throwing rolls the batch back.
    ///   - beforeCommit: called inside the transaction just before COMMIT (tests inject faults here).
    /// - Throws: `.checkpointConflict` when the stored checkpoint is not `expected` (another projector ran);
    ///   `.database` for PostgreSQL failures. Nothing is changed when it throws.
    public static func apply(
        _ batch: ChangeSet, from expected: FeedPosition, to position: FeedPosition,
        on connection: PostgresConnection, feed: String = ProjectionDefinition.feedName,
        beforeCheckpoint: () throws -> Void = {}, beforeCommit: () throws -> Void = {}
    ) throws(ProjectorError) -> AppliedBatch {
        do {
            return try connection.transaction { () throws -> AppliedBatch in
                // First: a column recompute takes what is left in the outbox as pending (see ColumnRecompute).
                try connection.query(
                    "DELETE FROM explore.change_outbox WHERE id = ANY($1::bigint[])", [int8Array(batch.entryIDs)])
                let (changes, recomputed) = try recomputeAffected(
                    listingIDs: batch.listingIDs, locationIDs: batch.locationIDs,
                    columnRecomputes: batch.columnRecomputes, on: connection)
                try beforeCheckpoint()
                let moved = try connection.query("""
                    UPDATE explore.checkpoint
                    SET low_snapshot = $2::pg_snapshot, target_snapshot = $3::pg_snapshot, last_id = $4,
                        applied_changes = applied_changes + $5, updated_at = now()
                    WHERE feed = $1 AND low_snapshot::text = $6 AND target_snapshot::text IS NOT DISTINCT FROM $7
                      AND last_id = $8
                    """, [feed, position.low.description, position.target?.description, position.lastID,
                          Int64(batch.entryIDs.count), expected.low.description, expected.target?.description,
                          expected.lastID])
                guard moved.affectedRows == 1 else {
                    throw ProjectorError(
                        code: .checkpointConflict,
                        message: "the checkpoint of '\(feed)' is not the one this projector last wrote")
                }
                try beforeCommit()
                return AppliedBatch(
                    changes: changes, recomputedListings: recomputed.count, consumedEntries: batch.entryIDs.count,
                    listingIDs: recomputed)
            }
        } catch {
            throw ProjectorError.database("applying a batch failed", error)
        }
    }

    /// Runs the defining query, read-only, for a sample of up to 5,000 listings spread over the whole projection.
    ///
    /// Why: a backend's first large statement pays for much of what it touches for the first time (its catalog
    /// caches, its working memory, a page fault for each shared buffer it maps). An apply connection that has only
    /// waited since it connected took 20-35 ms longer for its half of the first split batch of 10,000 listings than
    /// the driver's connection, which had read the whole projection to bootstrap the cache; after this, 1-8 ms.
    /// - Returns: the rows the defining query gave for the sample.
    @discardableResult
    static func warmUp(on connection: PostgresConnection) throws(ProjectorError) -> Int {
        do {
            // Every n-th id, n from the planner's row estimate (-1 before the first ANALYZE, and then every id).
            let sample = try connection.query("""
                SELECT array_agg(id)::text FROM (
                    SELECT id FROM explore.listings_projection
                    WHERE id % GREATEST(1, (SELECT (reltuples / 5000)::bigint FROM pg_class
                                            WHERE oid = 'explore.listings_projection'::regclass)) = 0
                    LIMIT 5000) AS sample
                """)
            return try connection.query(
                "SELECT count(*) FROM (\(ProjectionDefinition.restrictedQuery())) AS fresh", [sample.first?[0] ?? "{}"]
            ).first?.decode(0, as: Int.self) ?? 0
        } catch {
            throw ProjectorError.database("warming an apply connection up failed", error)
        }
    }

    /// Listings at the locations bound to `$1`, prepared like ``recomputeStatement``.
    private static let listingsAtLocationsStatement = PreparedStatement(ProjectionDefinition.listingsAtLocationsQuery)

    /// Recomputes the given listings and every listing at the given locations from the defining query into the
    /// projection table, and the listings of `columnRecomputes` by those (each listing once: the whole row wins),
    /// inside the caller's transaction (every feed moves its own position in that transaction). Returns the
    /// changes actually made, for the cache after commit, and the listings recomputed (ascending; a running
    /// rebuild recomputes them into its side table too).
    ///
    /// A column recompute is exact only while the outbox holds every change not yet applied, so only the
    /// outbox feed passes any, after deleting the batch's own entries.
    public static func recomputeAffected(
        listingIDs: [Int64], locationIDs: [Int64], columnRecomputes: [ColumnRecompute: [Int64]] = [:],
        on connection: PostgresConnection
    ) throws -> (changes: ListingChangeBatch, recomputed: [Int64]) {
        var ids = Set(listingIDs)
        if !locationIDs.isEmpty {
            let atLocations = try connection.query(
                listingsAtLocationsStatement, [int8Array(locationIDs)])
            for row in atLocations { if let id = row[0].flatMap({ Int64($0) }) { ids.insert(id) } }
        }
        var changes: [ListingChange] = []
        var recomputed: [Int64] = []
        let groups = columnRecomputes
            .map { (recompute: $0.key, ids: $0.value.filter { !ids.contains($0) }) }
            .filter { !$0.ids.isEmpty }
            .sorted { $0.recompute.columns.lexicographicallyPrecedes($1.recompute.columns) }
        // With its generic plan a column recompute looks every table up by index, driven by the ids. Left to
        // choose, PostgreSQL plans each batch for its own array and, from a few thousand ids on, hash-joins whole
        // tables: 317-323 ms for 10,000 ids of a million listings against 123-128 ms. (A failure rolls the
        // transaction back, and the setting with it.)
        if !groups.isEmpty { try connection.executeScript("SET LOCAL plan_cache_mode = force_generic_plan") }
        for (recompute, narrow) in groups {
            recomputed += narrow
            // Prepared like the whole-row statement: the connection prepares each statement text once.
            for row in try connection.query(PreparedStatement(recompute.statement), [int8Array(narrow)]) {
                guard row[0] == "f" else {
                    changes.append(try decodeChange(row, keepingText: recompute.keepsText))
                    continue
                }
                guard let id = row[1].flatMap({ Int64($0) }) else {
                    throw ProjectorError(code: .invalidRow, message: "malformed listing id")
                }
                ids.insert(id)
            }
        }
        if !groups.isEmpty { try connection.executeScript("SET LOCAL plan_cache_mode = DEFAULT") }
        let whole = ids.sorted()
        if !whole.isEmpty {
            for row in try connection.query(recomputeStatement, [int8Array(whole)]) {
                changes.append(try decodeChange(row))
            }
        }
        return (ListingChangeBatch(changes), Array(Set(recomputed).union(whole)).sorted())
    }

    /// A recompute's row: `'d'` and a deleted id, or `'u'` and the row's cache columns (whose text the cache
    /// holds already when `keepingText`).
    private static func decodeChange(_ row: PostgresRow, keepingText: Bool = false) throws -> ListingChange {
        guard row[0] == "d" else {
            let listing = try ProjectionRowDecoder.decode((1..<row.count).map { row[$0] })
            return keepingText ? .upsertKeepingText(listing) : .upsert(listing)
        }
        guard let id = row[1].flatMap({ Int64($0) }) else {
            throw ProjectorError(code: .invalidRow, message: "malformed deleted id")
        }
        return .delete(id)
    }

    /// Recomputes the listings bound to `$1` (a `bigint[]`) into the projection table in one statement (its CTEs
    /// share a snapshot, and the upsert and the delete touch disjoint ids), returning each changed row ('u') and
    /// each deleted id ('d').
    ///
    /// Prepared once per connection: planning this join of five tables cost as much as running it for a batch of
    /// ten listings (1.5 ms each), and it reads only large tables through their indexes, so the generic plan
    /// PostgreSQL settles on suits batches of every size. The outbox and checkpoint statements stay unprepared:
    /// the outbox's size swings, and a generic plan cached while it was small (a sequential scan testing each
    /// row against the whole id array) halved the applied rate under sustained writes, where each fresh plan
    /// sees the table's current size.
    private static let recomputeStatement: PreparedStatement = {
        let columns = ProjectionDefinition.columns
        let list = columns.joined(separator: ", ")
        let assignments = columns.dropFirst().map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")
        let current = columns.dropFirst().map { "p.\($0)" }.joined(separator: ", ")
        let incoming = columns.dropFirst().map { "EXCLUDED.\($0)" }.joined(separator: ", ")
        let nulls = columns.dropFirst().map { _ in "NULL" }.joined(separator: ", ")
        return PreparedStatement("""
            WITH fresh AS (\(ProjectionDefinition.restrictedQuery(parameter: 1))),
            upserted AS (
                INSERT INTO explore.listings_projection AS p (\(list))
                SELECT \(list) FROM fresh
                ON CONFLICT (id) DO UPDATE SET \(assignments)
                WHERE (\(current)) IS DISTINCT FROM (\(incoming))
                RETURNING p.*
            ),
            removed AS (
                -- Only ids the definition no longer returns are looked up (usually none), not the whole batch.
                DELETE FROM explore.listings_projection p
                WHERE p.id = ANY(ARRAY(SELECT unnest($1::bigint[]) EXCEPT SELECT id FROM fresh))
                RETURNING p.id
            )
            SELECT 'u', \(ProjectionDefinition.cacheColumns("upserted")) FROM upserted
            UNION ALL
            SELECT 'd', removed.id, \(nulls) FROM removed
            """)
    }()

    // MARK: Cache bootstrap

    /// Reads the whole projection and the checkpoint in one REPEATABLE READ snapshot, streaming the rows with
    /// COPY, and builds a store from them.
    /// - Throws: `.notBuilt` without a checkpoint; `.invalidRow` for a row the cache cannot hold.
    public static func loadCache(
        on connection: PostgresConnection, feed: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) -> (store: ExploreStore, checkpoint: Checkpoint) {
        do {
            try connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let checkpoint = try checkpoint(on: connection, feed: feed)
                let rows = try readRowsForStore(on: connection)
                try connection.executeScript("COMMIT")
                return (makeStore(rows), checkpoint)
            } catch {
                try? connection.executeScript("ROLLBACK")
                throw error
            }
        } catch {
            throw ProjectorError.database("loading the cache failed", error)
        }
    }

    /// The projection's rows for ``makeStore(_:)``, read in the caller's snapshot (COPY, in table order: the
    /// store orders rows itself, and an ORDER BY would only make the server sort before the first row streams).
    public static func readRowsForStore(on connection: PostgresConnection) throws(ProjectorError) -> DecodedRows {
        DecodedRows(try copyProjectionRows(on: connection, inIDOrder: false))
    }

    /// Builds a store from `rows`, then frees them on another thread: freeing a million decoded rows (two or
    /// three heap strings each) takes a few hundred milliseconds, and the store can be served meanwhile.
    public static func makeStore(_ rows: DecodedRows) -> ExploreStore {
        let store = ExploreStore(bulk: rows.rows)
        DispatchQueue.global(qos: .utility).async { rows.free() }
        return store
    }

    /// Every row of the projection table (or those among `ids`) in the cache's representation, by COPY, in id
    /// order unless `inIDOrder` is false.
    public static func copyProjectionRows(on connection: PostgresConnection, inIDOrder: Bool = true,
                                          ids: [Int64]? = nil) throws(ProjectorError) -> [ExploreListing]
    {
        var rows: [ExploreListing] = []
        // COPY takes no parameters; the id list is integers only (see `int8Array`).
        let restriction = ids.map { "WHERE p.id = ANY('\(int8Array($0))'::bigint[])" } ?? ""
        do {
            try connection.copyTo("""
                COPY (SELECT \(ProjectionDefinition.cacheColumns("p")) FROM explore.listings_projection p
                      \(restriction) \(inIDOrder ? "ORDER BY p.id" : "")) TO STDOUT
                """) { chunk in
                rows.append(try ProjectionRowDecoder.decode(copyLine: chunk))
            }
        } catch {
            throw ProjectorError.database("reading the projection failed", error)
        }
        return rows
    }

    // MARK: Helpers

    /// A `bigint[]` (or `int[]`) literal; values are integers, so nothing needs escaping.
    public static func int8Array(_ values: [Int64]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }
}

/// Projection rows decoded for a store (see ``ProjectionStore/makeStore(_:)``). Only this box refers to the
/// array, so emptying it on another thread is what frees the rows there, whichever thread lets go of the box.
public final class DecodedRows: @unchecked Sendable {
    // Safe: `rows` is read by the loading thread before the box is handed over, then only emptied by `free`.
    fileprivate private(set) var rows: [ExploreListing]

    fileprivate init(_ rows: [ExploreListing]) {
        self.rows = rows
    }

    /// Frees the rows a slice at a time with short pauses. They were allocated by the loading thread, and each
    /// free here locks that thread's allocator arena: one unbroken burst of a few million frees held the feed,
    /// which allocates on that arena, up for most of a second right after a bootstrap.
    fileprivate func free() {
        while !rows.isEmpty {
            rows.removeLast(min(1_024, rows.count))
            usleep(1_000)
        }
        rows = []
    }
}
