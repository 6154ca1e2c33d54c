public import ExploreQuery
public import Postgres
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares the projection table with the defining query, and the cache with the projection table.
public enum ProjectionVerifier {
    /// Differences between a source and the copy kept from it: the defining query over the base tables and the
    /// projection table (``verifyTable(on:sample:settle:)``), or the projection table and the cache
    /// (``verifyCache(_:appliedChanges:on:settle:catchUp:)``).
    public struct Report: Sendable, Hashable {
        /// Listings the source has but the copy lacks.
        public var missing: [Int64] = []
        /// Listings the copy holds but the source does not.
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
            let report = try compareInSnapshot(connection, ids: ids)
            return try settled(report, within: .now.advanced(by: settle)) { suspects in
                try compareInSnapshot(connection, ids: suspects)
            }
        } catch {
            throw ProjectorError.database("verifying the projection failed", error)
        }
    }

    /// Re-checks the listings `report` finds different, every 250 ms until they agree or `deadline` has passed;
    /// those that come to agree move to `pending`.
    private static func settled<Failure: Error>(
        _ report: Report, within deadline: ContinuousClock.Instant, recheck: ([Int64]) throws(Failure) -> Report
    ) throws(Failure) -> Report {
        var report = report
        while !report.isClean && ContinuousClock.now < deadline {
            // Blocking, like every call here: verification runs on its own thread, never on the cooperative pool.
            usleep(250_000)
            let suspects = (report.missing + report.extra + report.differing).sorted()
            let again = try recheck(suspects)
            let lasting = Set(again.missing + again.extra + again.differing)
            report.pending += suspects.filter { !lasting.contains($0) }
            report.missing.removeAll { !lasting.contains($0) }
            report.extra.removeAll { !lasting.contains($0) }
            report.differing.removeAll { !lasting.contains($0) }
        }
        report.pending.sort()
        return report
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

    /// The defining query and the table, as the listings `ids` (all when nil) bound to the parameters.
    private static func sides(ids: [Int64]?)
        -> (expected: String, actual: String, parameters: [(any PostgresEncodable)?])
    {
        let list = ProjectionDefinition.columns.joined(separator: ", ")
        guard let ids else {
            return (ProjectionDefinition.fullQuery, "SELECT \(list) FROM explore.listings_projection", [])
        }
        return (ProjectionDefinition.restrictedQuery(parameter: 1),
                "SELECT \(list) FROM explore.listings_projection WHERE id = ANY($1::bigint[])",
                [ProjectionStore.int8Array(ids)])
    }

    /// The listings among `ids` (all when nil) where the table and the defining query disagree in the caller's
    /// snapshot, in id order, each `missing`, `extra` or `differs`; pending changes are not looked at.
    static func differences(_ connection: PostgresConnection, ids: [Int64]?) throws
        -> [(id: Int64, kind: String)]
    {
        let (expected, actual, parameters) = sides(ids: ids)
        let columns = ProjectionDefinition.columns
        let expectedValues = columns.dropFirst().map { "e.\($0)" }.joined(separator: ", ")
        let actualValues = columns.dropFirst().map { "a.\($0)" }.joined(separator: ", ")
        let rows = try connection.query("""
            WITH expected AS (\(expected)), actual AS (\(actual))
            SELECT COALESCE(e.id, a.id),
                   CASE WHEN a.id IS NULL THEN 'missing' WHEN e.id IS NULL THEN 'extra' ELSE 'differs' END
            FROM expected e FULL JOIN actual a ON a.id = e.id
            WHERE e.id IS NULL OR a.id IS NULL OR (\(expectedValues)) IS DISTINCT FROM (\(actualValues))
            ORDER BY 1
            """, parameters)
        return rows.compactMap { row in row[0].flatMap { Int64($0) }.map { ($0, row[1] ?? "") } }
    }

    /// Compares the listings `ids` (all when nil) in the caller's snapshot.
    private static func compareTable(_ connection: PostgresConnection, ids: [Int64]?) throws -> Report {
        let differing = try differences(connection, ids: ids)
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
        for (id, kind) in differing {
            if pending.contains(id) {
                report.pending.append(id)
                continue
            }
            switch kind {
            case "missing": report.missing.append(id)
            case "extra": report.extra.append(id)
            default: report.differing.append(id)
            }
        }
        let (expected, actual, parameters) = sides(ids: ids)
        let counted = try connection.query("""
            SELECT count(*) FROM (SELECT id FROM (\(expected)) e UNION SELECT id FROM (\(actual)) a) ids
            """, parameters)
        report.compared = counted.first?[0].flatMap { Int($0) } ?? 0
        return report
    }

    /// Compares the cache with the projection table while the feed may keep applying changes.
    ///
    /// The table is read in one REPEATABLE READ snapshot with its checkpoint, and the cache is compared once it
    /// has applied at least that checkpoint's changes (`appliedChanges` reads the count the cache reflects). A
    /// listing changed after the snapshot then differs only until it is re-checked in a newer snapshot, so it
    /// ends in `pending`; a listing that keeps differing for `settle` is divergence. Why not wait for the cache
    /// to hold still: under a steady writer a batch lands during every whole-table comparison.
    /// - Parameter catchUp: how long to wait for the cache to reach a snapshot's checkpoint; past it the cache
    ///   is compared as it is, so a stalled feed shows as divergence.
    public static func verifyCache(
        _ cache: ExploreIndex, appliedChanges: () -> Int64, on connection: PostgresConnection,
        settle: Duration = .seconds(2), catchUp: Duration = .seconds(10)
    ) throws(ProjectorError) -> Report {
        func check(_ ids: [Int64]?) throws(ProjectorError) -> Report {
            let (rows, applied) = try tableSnapshot(connection, ids: ids)
            let deadline = ContinuousClock.now.advanced(by: catchUp)
            while appliedChanges() < applied && ContinuousClock.now < deadline { usleep(2_000) }
            return compare(cache: cache, with: rows, ids: ids)
        }
        let report = try check(nil)
        return try settled(report, within: .now.advanced(by: settle)) { suspects throws(ProjectorError) in
            try check(suspects)
        }
    }

    /// The projection's rows (all, or those among `ids`) and the checkpoint's applied-change count, in one
    /// REPEATABLE READ snapshot.
    private static func tableSnapshot(_ connection: PostgresConnection, ids: [Int64]?) throws(ProjectorError)
        -> (rows: [ExploreListing], applied: Int64)
    {
        do {
            try connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        } catch {
            throw ProjectorError.database("reading the projection failed", error)
        }
        do throws(ProjectorError) {
            let checkpoint = try ProjectionStore.checkpoint(on: connection)
            let rows = try ProjectionStore.copyProjectionRows(on: connection, ids: ids)
            do {
                try connection.executeScript("COMMIT")
            } catch {
                throw ProjectorError.database("reading the projection failed", error)
            }
            return (rows, checkpoint.appliedChanges)
        } catch {
            try? connection.executeScript("ROLLBACK")
            throw error
        }
    }

    /// Compares the cache with rows of the projection table read in one snapshot: the whole table, or (with
    /// `ids`) the table's rows among `ids`. `missing` are table rows the cache lacks, `extra` cache rows the
    /// table lacks.
    public static func compare(cache: ExploreIndex, with tableRows: [ExploreListing], ids: [Int64]? = nil) -> Report {
        var report = Report()
        var tableByID: [Int64: ExploreListing] = [:]
        tableByID.reserveCapacity(tableRows.count)
        for row in tableRows { tableByID[row.id] = row }
        let checked = ids ?? Array(Set(tableByID.keys).union(cache.listingIDs())).sorted()
        // In slices: each `rows(ids:)` holds the cache's read lock, and copying a million rows at once would
        // stall the feed's next batch, and with it (the lock prefers writers) every search, for the whole copy.
        // A listing that changes between slices is one more difference for the re-check.
        var cachedByID: [Int64: ExploreListing] = [:]
        cachedByID.reserveCapacity(checked.count)
        for start in stride(from: 0, to: checked.count, by: 4_096) {
            for row in cache.rows(ids: Array(checked[start..<min(start + 4_096, checked.count)])) {
                cachedByID[row.id] = row
            }
        }
        for id in checked {
            switch (tableByID[id], cachedByID[id]) {
            case (nil, nil): continue
            case (.some, nil): report.missing.append(id)
            case (nil, .some): report.extra.append(id)
            case (let table?, let cached?): if table != cached { report.differing.append(id) }
            }
            report.compared += 1
        }
        return report
    }
}
