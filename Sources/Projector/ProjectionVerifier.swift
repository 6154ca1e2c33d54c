public import ExploreQuery
public import Postgres
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares the projection table with the defining query, and the cache with the projection table.
public enum ProjectionVerifier {
    /// Differences between the projection table and the defining query over the base tables.
    public struct Report: Sendable, Hashable {
        /// Listings the defining query returns but the table lacks.
        public var missing: [Int64] = []
        /// Listings the table holds but the defining query does not return.
        public var extra: [Int64] = []
        /// Listings present in both with different values.
        public var differing: [Int64] = []
        /// Differences explained by changes not applied yet (the feed is behind, not wrong): listings with outbox
        /// entries pending, and listings whose difference went away on a re-check (a change on its way, as a
        /// Kafka feed's events are, leaves no outbox entry to explain it).
        public var pending: [Int64] = []
        /// Listings compared.
        public var compared: Int = 0

        /// No divergence beyond pending changes.
        public var isClean: Bool { missing.isEmpty && extra.isEmpty && differing.isEmpty }
    }

    /// Compares the table with the defining query in one REPEATABLE READ snapshot, then re-checks the listings
    /// that differ, each time in a new snapshot, until they agree or `settle` has passed: only differences that
    /// last count as divergence.
    /// - Parameters:
    ///   - sample: compare only about this many random listings from each side; `nil` compares all.
    ///   - settle: how long differing listings are re-checked (every 250 ms) before they count.
    public static func verifyTable(on connection: PostgresConnection, sample: Int? = nil,
                                   settle: Duration = .seconds(2)) throws(ProjectorError) -> Report
    {
        do {
            var ids: [Int64]?
            if let sample {
                ids = try connection.query("""
                    SELECT id FROM (SELECT id FROM property.listings ORDER BY random() LIMIT $1) s
                    UNION
                    SELECT id FROM (SELECT id FROM explore.listings_projection ORDER BY random() LIMIT $1) t
                    """, [Int64(max(0, sample))]).compactMap { $0[0].flatMap { Int64($0) } }.sorted()
            }
            var report = try compareInSnapshot(connection, ids: ids)
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: settle)
            while !report.isClean && clock.now < deadline {
                // Blocking, like every call here: verification runs on its own thread, never on the cooperative pool.
                usleep(250_000)
                let suspects = (report.missing + report.extra + report.differing).sorted()
                let again = try compareInSnapshot(connection, ids: suspects)
                let lasting = Set(again.missing + again.extra + again.differing)
                report.pending += suspects.filter { !lasting.contains($0) }
                report.missing.removeAll { !lasting.contains($0) }
                report.extra.removeAll { !lasting.contains($0) }
                report.differing.removeAll { !lasting.contains($0) }
            }
            report.pending.sort()
            return report
        } catch {
            throw ProjectorError.database("verifying the projection failed", error)
        }
    }

    private static func compareInSnapshot(_ connection: PostgresConnection, ids: [Int64]?) throws -> Report {
        try connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            let report = try compareTable(connection, ids: ids)
            try connection.executeScript("COMMIT")
            return report
        } catch {
            try? connection.executeScript("ROLLBACK")
            throw error
        }
    }

    /// Compares the listings `ids` (all when nil) in the caller's snapshot.
    private static func compareTable(_ connection: PostgresConnection, ids: [Int64]?) throws -> Report {
        let columns = ProjectionDefinition.columns
        let list = columns.joined(separator: ", ")
        let expectedValues = columns.dropFirst().map { "e.\($0)" }.joined(separator: ", ")
        let actualValues = columns.dropFirst().map { "a.\($0)" }.joined(separator: ", ")
        let expected: String
        let actual: String
        var parameters: [(any PostgresEncodable)?] = []
        if let ids {
            parameters = [ProjectionStore.int8Array(ids)]
            expected = ProjectionDefinition.restrictedQuery(parameter: 1)
            actual = "SELECT \(list) FROM explore.listings_projection WHERE id = ANY($1::bigint[])"
        } else {
            expected = ProjectionDefinition.fullQuery
            actual = "SELECT \(list) FROM explore.listings_projection"
        }
        let rows = try connection.query("""
            WITH expected AS (\(expected)), actual AS (\(actual))
            SELECT COALESCE(e.id, a.id),
                   CASE WHEN a.id IS NULL THEN 'missing' WHEN e.id IS NULL THEN 'extra' ELSE 'differs' END
            FROM expected e FULL JOIN actual a ON a.id = e.id
            WHERE e.id IS NULL OR a.id IS NULL OR (\(expectedValues)) IS DISTINCT FROM (\(actualValues))
            ORDER BY 1
            """, parameters)
        let pendingRows = try connection.query("""
            SELECT key FROM explore.change_outbox WHERE source <> 'locations'
            UNION
            SELECT l.id FROM property.listings l
            WHERE l.location_id IN (SELECT key FROM explore.change_outbox WHERE source = 'locations')
            UNION
            SELECT p.id FROM explore.listings_projection p
            WHERE p.location_id IN (SELECT key FROM explore.change_outbox WHERE source = 'locations')
            """)
        let pending = Set(pendingRows.compactMap { $0[0].flatMap { Int64($0) } })
        var report = Report()
        for row in rows {
            guard let id = row[0].flatMap({ Int64($0) }) else { continue }
            if pending.contains(id) {
                report.pending.append(id)
                continue
            }
            switch row[1] {
            case "missing": report.missing.append(id)
            case "extra": report.extra.append(id)
            default: report.differing.append(id)
            }
        }
        let counted = try connection.query("""
            SELECT count(*) FROM (SELECT id FROM (\(expected)) e UNION SELECT id FROM (\(actual)) a) ids
            """, parameters)
        report.compared = counted.first?[0].flatMap { Int($0) } ?? 0
        return report
    }

    /// Differences between the cache and rows of the projection table.
    public struct CacheReport: Sendable, Hashable {
        /// Table rows the cache lacks.
        public var missing: [Int64] = []
        /// Table rows the cache holds with different values.
        public var differing: [Int64] = []
        /// How many more rows the cache holds than the table (rows the table lacks).
        public var extraCount: Int = 0

        /// The cache equals the table.
        public var isClean: Bool { missing.isEmpty && differing.isEmpty && extraCount == 0 }
    }

    /// Compares the cache with the projection table's rows (e.g. from ``ProjectionStore/copyProjectionRows(on:)``).
    public static func compare(cache: ExploreIndex, with tableRows: [ExploreListing]) -> CacheReport {
        var report = CacheReport()
        let cached = cache.rows(ids: tableRows.map(\.id))
        var cachedByID: [Int64: ExploreListing] = [:]
        for row in cached { cachedByID[row.id] = row }
        for row in tableRows {
            guard let inCache = cachedByID[row.id] else {
                report.missing.append(row.id)
                continue
            }
            if inCache != row { report.differing.append(row.id) }
        }
        report.extraCount = max(0, cache.count - (tableRows.count - report.missing.count))
        return report
    }
}
