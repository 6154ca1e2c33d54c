public import Postgres

/// The SQL of a full rebuild: the side table, its chunks, its catch-up, the swap and the projection's state row.
///
/// Owns no connection: every call runs on the connection it is given, which must have a single owner.
public enum RebuildStore {
    /// The side table a rebuild fills.
    public static let sideTable = "listings_projection_rebuild"
    /// The name the old table carries between the swap and its drop.
    public static let oldTable = "listings_projection_old"
    /// The live table's name, unqualified.
    static let liveTable = "listings_projection"
    /// Suffix of the side table's index names until the swap.
    static let sideSuffix = "_rebuild"
    /// Suffix of the old table's index names after the swap.
    static let oldSuffix = "_old"

    /// What ``prepare(on:feed:)`` found.
    public struct Prepared: Sendable, Hashable {
        /// The lowest listing id in the base table; `nil` without listings.
        public var lowestID: Int64?
        /// The highest listing id in the base table; `nil` without listings.
        public var highestID: Int64?
        /// The live table's row count: what the rebuild expects to write.
        public var expectedRows: Int64
    }

    /// The projection's recorded state.
    public struct State: Sendable, Hashable {
        /// The definition version the live table was built with.
        public var version: Int
        /// A rebuild was asked for (by `explore-projector rebuild --database-url`) and not started yet.
        public var rebuildRequested: Bool
    }

    // MARK: State row

    /// The state row of `projection`; `nil` when there is none (or the table does not exist yet).
    public static func state(on connection: PostgresConnection, projection: String = ProjectionDefinition.feedName)
        throws(ProjectorError) -> State?
    {
        do {
            let present = try connection.query("SELECT to_regclass('explore.projection_state') IS NOT NULL")
            guard present.first?[0] == "t" else { return nil }
            let rows = try connection.query("""
                SELECT version, rebuild_requested_at IS NOT NULL FROM explore.projection_state
                WHERE projection = $1
                """, [projection])
            guard let row = rows.first else { return nil }
            return State(version: try row.decode(0, as: Int.self), rebuildRequested: row[1] == "t")
        } catch {
            throw ProjectorError.database("reading the projection state failed", error)
        }
    }

    /// Records that the live table was built with `version` (when no row says otherwise yet).
    public static func recordVersionIfAbsent(
        _ version: Int, on connection: PostgresConnection, projection: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) {
        do {
            try connection.query("""
                INSERT INTO explore.projection_state (projection, version) VALUES ($1, $2)
                ON CONFLICT (projection) DO NOTHING
                """, [projection, version])
        } catch {
            throw ProjectorError.database("recording the projection version failed", error)
        }
    }

    /// Asks the projector following the feed for a rebuild (it looks about once a second).
    ///
    /// Without a state row the table was built by a binary that records versions, so the row gets the shipped one.
    public static func requestRebuild(on connection: PostgresConnection,
                                      projection: String = ProjectionDefinition.feedName) throws(ProjectorError)
    {
        do {
            try connection.query("""
                INSERT INTO explore.projection_state (projection, version, rebuild_requested_at)
                VALUES ($1, $2, clock_timestamp())
                ON CONFLICT (projection) DO UPDATE SET rebuild_requested_at = clock_timestamp()
                """, [projection, ProjectionQuery.shipped.version])
        } catch {
            throw ProjectorError.database("requesting a rebuild failed", error)
        }
    }

    /// Marks a rebuild started (clears the request) and publishes its first progress. Without a state row the
    /// live table was built by this binary, with `version`.
    static func markStarted(version: Int, on connection: PostgresConnection, projection: String) throws {
        try connection.query("""
            INSERT INTO explore.projection_state (projection, version, rebuild_started_at, rebuild_phase)
            VALUES ($1, $2, clock_timestamp(), 'building')
            ON CONFLICT (projection) DO UPDATE SET rebuild_requested_at = NULL, rebuild_started_at = clock_timestamp(),
                rebuild_finished_at = NULL, rebuild_error = NULL, rebuild_phase = 'building',
                rebuild_rows_done = 0, rebuild_rows_total = NULL
            """, [projection, version])
    }

    /// Publishes progress for other processes (`explore-projector rebuild --database-url` while serving).
    static func publish(_ progress: RebuildProgress, on connection: PostgresConnection, projection: String) throws {
        try connection.query("""
            UPDATE explore.projection_state
            SET rebuild_phase = $2, rebuild_rows_done = $3, rebuild_rows_total = $4
            WHERE projection = $1
            """, [projection, progress.phase.rawValue, progress.rowsDone, progress.rowsTotal])
    }

    /// Marks the rebuild finished, with its error if it failed.
    static func markFinished(error: String?, on connection: PostgresConnection, projection: String) throws {
        try connection.query("""
            UPDATE explore.projection_state
            SET rebuild_phase = NULL, rebuild_finished_at = clock_timestamp(), rebuild_error = $2
            WHERE projection = $1
            """, [projection, error])
    }

    // MARK: Build

    /// Drops leftovers of an earlier rebuild, creates the side table with the live table's columns, defaults,
    /// checks and storage options such as its fillfactor (indexes come after the fill: building them once is
    /// cheaper than maintaining them per row), and reads the id range to fill.
    ///
    /// Autovacuum stays off the side table until the swap, and ``createIndexes(on:)`` vacuums it itself: an
    /// autovacuum worker busy on a freshly filled table would hold a lock the swap must wait for, and it is only
    /// cancelled for lock waits longer than `deadlock_timeout`, which the swap's short `lock_timeout` never reaches.
    public static func prepare(on connection: PostgresConnection) throws(ProjectorError) -> Prepared {
        do {
            // `LIKE` copies no storage parameters. The catalog holds them as validated `name=value` words.
            let liveOptions = try connection.query("""
                SELECT option FROM pg_class, unnest(reloptions) AS option
                WHERE pg_class.oid = 'explore.\(liveTable)'::regclass AND option NOT LIKE 'autovacuum_enabled=%'
                """).compactMap { $0[0] }
            let options = (["autovacuum_enabled = false"] + liveOptions).joined(separator: ", ")
            try connection.executeScript("""
                SET client_min_messages = warning;
                DROP TABLE IF EXISTS explore.\(sideTable);
                DROP TABLE IF EXISTS explore.\(oldTable);
                CREATE TABLE explore.\(sideTable) (LIKE explore.\(liveTable)
                    INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)
                    WITH (\(options));
                """)
            let range = try connection.query("SELECT min(id), max(id) FROM property.listings")
            let count = try connection.query("SELECT count(*) FROM explore.\(liveTable)")
            return Prepared(
                lowestID: range.first?[0].flatMap { Int64($0) }, highestID: range.first?[1].flatMap { Int64($0) },
                expectedRows: count.first?[0].flatMap { Int64($0) } ?? 0)
        } catch {
            throw ProjectorError.database("creating the side table failed", error)
        }
    }

    /// Copies the defining query's rows with listing ids in `[lower, upper)` into the side table, in one
    /// transaction; returns the rows written.
    ///
    /// Nested loops over the join keys' indexes: a chunk touches a small slice of every base table, and hash or
    /// merge joins would read the whole of each one per chunk.
    public static func fill(
        _ query: ProjectionQuery, lower: Int64, upper: Int64, on connection: PostgresConnection
    ) throws(ProjectorError) -> Int64 {
        let columns = ProjectionDefinition.columns.joined(separator: ", ")
        do {
            return try connection.transaction { () throws -> Int64 in
                try connection.executeScript("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                let result = try connection.query("""
                    INSERT INTO explore.\(sideTable) (\(columns))
                    SELECT \(columns) FROM (\(query.rangeQuery(lower: 1, upper: 2))) AS definition
                    """, [lower, upper])
                return Int64(result.affectedRows)
            }
        } catch {
            throw ProjectorError.database("filling listings \(lower)..<\(upper) of the side table failed", error)
        }
    }

    /// Gives the side table the live table's indexes (and the constraints they back), owner and grants, then
    /// VACUUM (ANALYZE): the planner knows it as soon as it is swapped in, and autovacuum has no reason to visit
    /// it right after the swap.
    public static func createIndexes(on connection: PostgresConnection) throws(ProjectorError) {
        do {
            for index in try liveIndexes(on: connection) {
                let sideName = index.name + sideSuffix
                guard sideName.utf8.count <= 63, (index.name + oldSuffix).utf8.count <= 63 else {
                    throw ProjectorError(code: .invalidRow, message: "index name \(index.name) is too long to "
                        + "carry a rebuild suffix")
                }
                let prefix = " INDEX \(index.name) ON explore.\(liveTable) "
                guard let range = index.definition.firstRange(of: prefix) else {
                    throw ProjectorError(code: .invalidRow, message: "unexpected index definition: "
                        + index.definition)
                }
                var definition = index.definition
                definition.replaceSubrange(range, with: " INDEX \(sideName) ON explore.\(sideTable) ")
                try connection.query(definition)
                switch index.constraintType {
                case "p":
                    try connection.query("""
                        ALTER TABLE explore.\(sideTable) ADD CONSTRAINT \(sideName) PRIMARY KEY USING INDEX \(sideName)
                        """)
                case "u":
                    try connection.query("""
                        ALTER TABLE explore.\(sideTable) ADD CONSTRAINT \(sideName) UNIQUE USING INDEX \(sideName)
                        """)
                default:
                    break
                }
            }
            // The live table's owner and grants (the migrations' grants to explore_reader and explore_projector).
            let owner = try connection.query("""
                SELECT quote_ident(pg_get_userbyid(relowner)), pg_get_userbyid(relowner) = current_user
                FROM pg_class WHERE oid = 'explore.\(liveTable)'::regclass
                """)
            if let row = owner.first, row[1] == "f", let name = row[0] {
                try connection.query("ALTER TABLE explore.\(sideTable) OWNER TO \(name)")
            }
            let grants = try connection.query("""
                SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                              ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = 'explore.\(liveTable)'::regclass
                """)
            for grant in grants {
                guard let privilege = grant[0], let grantee = grant[1] else { continue }
                try connection.query("GRANT \(privilege) ON explore.\(sideTable) TO \(grantee)")
            }
            try connection.query("VACUUM (ANALYZE) explore.\(sideTable)")
        } catch {
            throw ProjectorError.database("indexing the side table failed", error)
        }
    }

    /// Recomputes `ids` into the side table: upserts the rows the defining query returns, deletes the others.
    public static func catchUp(_ ids: [Int64], query: ProjectionQuery, on connection: PostgresConnection)
        throws(ProjectorError)
    {
        guard !ids.isEmpty else { return }
        do {
            try recomputeIntoSide(ProjectionStore.int8Array(ids.sorted()), query: query, on: connection)
        } catch {
            throw ProjectorError.database("catching up the side table failed", error)
        }
    }

    private static func recomputeIntoSide(_ ids: String, query: ProjectionQuery, on connection: PostgresConnection)
        throws
    {
        let columns = ProjectionDefinition.columns
        let list = columns.joined(separator: ", ")
        let assignments = columns.dropFirst().map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")
        let current = columns.dropFirst().map { "p.\($0)" }.joined(separator: ", ")
        let incoming = columns.dropFirst().map { "EXCLUDED.\($0)" }.joined(separator: ", ")
        // One statement: both parts share a snapshot and touch disjoint ids.
        try connection.query("""
            WITH fresh AS (\(query.restrictedQuery(parameter: 1))),
            upserted AS (
                INSERT INTO explore.\(sideTable) AS p (\(list))
                SELECT \(list) FROM fresh
                ON CONFLICT (id) DO UPDATE SET \(assignments)
                WHERE (\(current)) IS DISTINCT FROM (\(incoming))
                RETURNING 1
            )
            DELETE FROM explore.\(sideTable) p
            WHERE p.id = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.id = p.id)
            """, [ids])
    }

    // MARK: Swap

    /// Whether the swap committed or met the lock timeout (and changed nothing).
    public enum SwapOutcome: Sendable, Hashable {
        case swapped
        case lockTimeout
    }

    /// In one transaction: recomputes the last touched ids into the side table, takes the live table's lock
    /// (waiting at most `lockTimeout`, so readers queued behind the swap are never held up longer), renames the
    /// live table and its indexes to `*_old` and the side table and its indexes to the live names, and records
    /// `query.version`. Must run between feed batches.
    public static func swap(
        touched: [Int64], query: ProjectionQuery, lockTimeout: Duration, on connection: PostgresConnection,
        projection: String = ProjectionDefinition.feedName
    ) throws(ProjectorError) -> SwapOutcome {
        let milliseconds = max(1, lockTimeout.components.seconds * 1_000
            + lockTimeout.components.attoseconds / 1_000_000_000_000_000)
        do {
            try connection.transaction { () throws in
                if !touched.isEmpty {
                    try recomputeIntoSide(ProjectionStore.int8Array(touched.sorted()), query: query, on: connection)
                }
                try connection.executeScript("""
                    SET LOCAL lock_timeout = '\(milliseconds)ms';
                    LOCK TABLE explore.\(liveTable) IN ACCESS EXCLUSIVE MODE;
                    """)
                let live = try liveIndexes(on: connection).map(\.name)
                var statements = ["ALTER TABLE explore.\(liveTable) RENAME TO \(oldTable)"]
                for name in live { statements.append("ALTER INDEX explore.\(name) RENAME TO \(name)\(oldSuffix)") }
                statements.append("ALTER TABLE explore.\(sideTable) RENAME TO \(liveTable)")
                for name in live { statements.append("ALTER INDEX explore.\(name)\(sideSuffix) RENAME TO \(name)") }
                statements.append("ALTER TABLE explore.\(liveTable) RESET (autovacuum_enabled)")
                try connection.executeScript(statements.joined(separator: ";\n"))
                try connection.query("""
                    INSERT INTO explore.projection_state (projection, version, built_at) VALUES ($1, $2, now())
                    ON CONFLICT (projection) DO UPDATE SET version = EXCLUDED.version, built_at = now()
                    """, [projection, query.version])
            }
            return .swapped
        } catch let error as PostgresError where error.sqlState == "55P03" {
            return .lockTimeout
        } catch {
            throw ProjectorError.database("swapping the rebuilt table in failed", error)
        }
    }

    /// Drops the old table after the swap, and any side table a failed rebuild left. Waits at most `lockTimeout`
    /// per attempt, up to `attempts` times. Nobody reads these tables by name, so waiting for them blocks no
    /// reader; a timeout longer than `deadlock_timeout` lets PostgreSQL cancel an autovacuum worker on them.
    public static func dropLeftovers(lockTimeout: Duration = .seconds(3), attempts: Int = 20,
                                     on connection: PostgresConnection) throws(ProjectorError)
    {
        let milliseconds = max(1, lockTimeout.components.seconds * 1_000
            + lockTimeout.components.attoseconds / 1_000_000_000_000_000)
        var attempt = 0
        while true {
            attempt += 1
            do {
                try connection.transaction { () throws in
                    try connection.executeScript("""
                        SET LOCAL lock_timeout = '\(milliseconds)ms';
                        SET LOCAL client_min_messages = warning;
                        DROP TABLE IF EXISTS explore.\(oldTable);
                        DROP TABLE IF EXISTS explore.\(sideTable);
                        """)
                }
                return
            } catch let error as PostgresError where error.sqlState == "55P03" && attempt < attempts {
                continue
            } catch {
                throw ProjectorError.database("dropping the old projection table failed", error)
            }
        }
    }

    // MARK: Catalog

    /// An index of the live table.
    struct LiveIndex {
        var name: String
        var definition: String
        /// `p`, `u`, `x` for an index backing a constraint; `nil` otherwise.
        var constraintType: String?
    }

    /// The live table's indexes, in a stable order.
    static func liveIndexes(on connection: PostgresConnection) throws -> [LiveIndex] {
        try connection.query("""
            SELECT i.relname, pg_get_indexdef(i.oid), c.contype::text
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
            WHERE x.indrelid = 'explore.\(liveTable)'::regclass
            ORDER BY i.relname
            """).map { row in
            LiveIndex(name: row[0] ?? "", definition: row[1] ?? "", constraintType: row[2])
        }
    }
}
