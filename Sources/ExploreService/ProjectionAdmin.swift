import Dispatch
import ExploreQuery
import ExploreServer
import ExploreWire
import Logging
import Postgres
import Projector

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
        try await reportingFailure("REBUILD") {
            try await offCooperativePool { () throws(ExploreServiceError) in
                try projector.rebuild()
            }
        }
        let micros = (DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1_000
        logger.info("rebuilt", metadata: ["listings": "\(index.count)", "microseconds": "\(micros)"])
        return RebuildReport(listingCount: UInt64(index.count), durationMicroseconds: micros)
    }

    func verify() async throws -> VerifyReport {
        let (projector, index, postgres, logger) = (projector, index, postgres, logger)
        return try await reportingFailure("VERIFY") {
            try await offCooperativePool { () throws(ExploreServiceError) -> VerifyReport in
                try Self.verify(index: index, projector: projector, postgres: postgres, logger: logger)
            }
        }
    }

    /// Runs an admin operation; a failure is logged and answered as `admin_failed` with its one-line reason
    /// (the operator holds the admin token, so the reason is theirs to read; any other error frame would hide it).
    private func reportingFailure<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ExploreServiceError {
            logger.error("\(operation) failed", metadata: ["error": "\(error.message)"])
            throw WireError(.adminFailed, error.message)
        }
    }

    /// Blocking: the table against the definition, then the cache against the table; both while the feed keeps
    /// applying changes (see ``ProjectionVerifier``).
    static func verify(index: ExploreIndex, projector: ProjectorHandle, postgres: PostgresConfiguration,
                       logger: Logger) throws(ExploreServiceError) -> VerifyReport
    {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(postgres)
        } catch {
            throw ExploreServiceError(.databaseUnavailable, "cannot connect to PostgreSQL: \(error.message)")
        }
        defer { connection.close() }
        let table: ProjectionVerifier.Report
        let cache: ProjectionVerifier.Report
        do {
            table = try ProjectionVerifier.verifyTable(on: connection)
            cache = try ProjectionVerifier.verifyCache(
                index, appliedChanges: { projector.status.appliedChanges }, on: connection)
        } catch {
            throw ExploreServiceError(.projectionFailed, "\(error)")
        }
        let mismatches = Set(table.missing + table.extra + table.differing + cache.missing + cache.extra
                             + cache.differing).sorted()
        logger.info("verified", metadata: [
            "table": "\(table.compared) compared, \(table.pending.count) pending",
            "cache": "\(cache.compared) compared, \(cache.pending.count) pending",
            "mismatches": "\(mismatches.count)",
        ])
        return VerifyReport(
            checked: UInt64(table.compared), mismatchCount: UInt64(mismatches.count),
            sampleMismatchIDs: Array(mismatches.prefix(VerifyReport.maximumSampleCount)),
            pendingCount: UInt64(Set(table.pending + cache.pending).count))
    }
}
