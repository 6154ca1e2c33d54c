import Dispatch
import ExploreQuery
import ExploreServer
import ExploreWire
import Logging
import Postgres
import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The protocol's admin operations over the projection.
///
/// `REBUILD` rebuilds the projection table beside the live one from the defining query, swaps it in between two
/// feed batches, then loads a new cache off to the side and swaps it in, while searches keep being answered and
/// the feed keeps applying changes (see `RebuildStateMachine`); progress shows in `STATS`. `VERIFY` compares the
/// table with the defining query and the cache with the table.
struct ProjectionAdmin: AdminHandler {
    let index: ExploreIndex
    let projector: ProjectorHandle
    let postgres: PostgresConfiguration
    let logger: Logger

    func rebuild() async throws -> RebuildReport {
        let (projector, index) = (projector, index)
        logger.info("rebuilding the projection table and the cache")
        let start = DispatchTime.now()
        try await offCooperativePool { () throws(ExploreServiceError) in
            try projector.rebuild()
        }
        let micros = (DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1_000
        logger.info("rebuilt", metadata: ["listings": "\(index.count)", "microseconds": "\(micros)"])
        return RebuildReport(listingCount: UInt64(index.count), durationMicroseconds: micros)
    }

    func verify() async throws -> VerifyReport {
        let (projector, index, postgres) = (projector, index, postgres)
        let report = try await offCooperativePool { () throws(ExploreServiceError) -> VerifyReport in
            try Self.verify(index: index, projector: projector, postgres: postgres)
        }
        logger.info("verified", metadata: [
            "checked": "\(report.checked)", "mismatches": "\(report.mismatchCount)",
        ])
        return report
    }

    /// Blocking: the table against the definition, then the cache against the table.
    ///
    /// The cache is compared with a table snapshot taken at the checkpoint the cache reflects; while the
    /// projector moves on, the comparison is retried, and only differences seen on a matching snapshot count.
    static func verify(index: ExploreIndex, projector: ProjectorHandle, postgres: PostgresConfiguration)
        throws(ExploreServiceError) -> VerifyReport
    {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(postgres)
        } catch {
            throw ExploreServiceError(.databaseUnavailable, "cannot connect to PostgreSQL: \(error.message)")
        }
        defer { connection.close() }
        let table: ProjectionVerifier.Report
        do {
            table = try ProjectionVerifier.verifyTable(on: connection)
        } catch {
            throw ExploreServiceError(.projectionFailed, "\(error)")
        }
        var mismatches = Set(table.missing + table.extra + table.differing)

        var cacheReport: ProjectionVerifier.CacheReport?
        for attempt in 0..<20 {
            if attempt > 0 { usleep(50_000) }
            let (rows, applied) = try tableSnapshot(connection)
            guard projector.status.appliedChanges == applied else { continue }
            let report = ProjectionVerifier.compare(cache: index, with: rows)
            // A batch applied during the comparison makes it inconclusive; try again.
            guard projector.status.appliedChanges == applied else { continue }
            cacheReport = report
            if report.isClean { break }
        }
        guard let cacheReport else {
            throw ExploreServiceError(.projectionFailed, "the cache did not hold still long enough to compare "
                + "it with the projection table; retry VERIFY")
        }
        mismatches.formUnion(cacheReport.missing)
        mismatches.formUnion(cacheReport.differing)
        let sorted = mismatches.sorted()
        return VerifyReport(
            checked: UInt64(table.compared),
            mismatchCount: UInt64(sorted.count + cacheReport.extraCount),
            sampleMismatchIDs: Array(sorted.prefix(VerifyReport.maximumSampleCount)))
    }

    /// The projection's rows and the checkpoint's applied-change count, from one REPEATABLE READ snapshot.
    private static func tableSnapshot(_ connection: PostgresConnection) throws(ExploreServiceError)
        -> (rows: [ExploreListing], applied: Int64)
    {
        do {
            try connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let checkpoint = try ProjectionStore.checkpoint(on: connection)
                let rows = try ProjectionStore.copyProjectionRows(on: connection)
                try connection.executeScript("COMMIT")
                return (rows, checkpoint.appliedChanges)
            } catch {
                try? connection.executeScript("ROLLBACK")
                throw error
            }
        } catch {
            throw ExploreServiceError(.projectionFailed, "reading the projection failed: \(error)")
        }
    }
}
