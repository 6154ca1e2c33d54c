import Dispatch
import ExploreServer
import ExploreService
import Foundation
import Postgres
@testable import Projector
import Testing
import TestSupport

/// `explore-projector rebuild`, run as the built executable against a real PostgreSQL: directly, directly while a
/// service follows the feed, and through a server's admin REBUILD; and its usage errors.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RebuildCommandTests {
    static func run(_ arguments: [String]) async throws -> BuiltExecutable.Outcome {
        try await blockingValue { try BuiltExecutable.run(arguments) }
    }

    static func url(_ configuration: PostgresConfiguration) -> String {
        "postgres://\(configuration.user):\(configuration.password ?? "")@\(configuration.host):"
            + "\(configuration.port)/\(configuration.database)"
    }

    /// A migrated database with the small portal, projection built; returns the table's oid.
    static func prepare(_ configuration: PostgresConfiguration, corrupt: Bool) async throws -> Int64 {
        try await blockingValue {
            try ProjectorFixtures.migrate(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try ProjectorFixtures.seed(connection, listings: 400)
            try ProjectionStore.buildIfNeeded(on: connection)
            if corrupt { try connection.query("UPDATE explore.listings_projection SET title = 'x' WHERE id % 7 = 0") }
            return try RebuildTests.tableOID(connection)
        }
    }

    static func tableState(_ configuration: PostgresConfiguration) async throws
        -> (oid: Int64, clean: Bool, version: Int?)
    {
        try await blockingValue {
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            return (try RebuildTests.tableOID(connection),
                    try ProjectorFixtures.divergence(connection).table.isClean,
                    try RebuildStore.state(on: connection)?.version)
        }
    }

    @Test func directRebuildWithoutAProjectorRepairsTheTable() async throws {
        try await TestPostgres.withDatabase { configuration in
            let oid = try await Self.prepare(configuration, corrupt: true)
            let outcome = try await Self.run(["rebuild", "--database-url", Self.url(configuration),
                                              "--chunk-size", "50"])
            #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
            #expect(outcome.stdout.contains("rebuilt explore.listings_projection: 360 rows"), "\(outcome.stdout)")
            let state = try await Self.tableState(configuration)
            #expect(state.oid != oid)
            #expect(state.clean)
            #expect(state.version == ProjectionQuery.shipped.version)
        }
    }

    @Test func directRebuildWhileServingAsksTheServiceAndItsCacheFollows() async throws {
        try await TestPostgres.withDatabase { configuration in
            let oid = try await Self.prepare(configuration, corrupt: true)
            let service = try await ExploreService.start(configuration: .init(
                postgres: configuration, pollInterval: .milliseconds(20),
                server: ExploreServerConfiguration(host: "127.0.0.1", port: 0)))
            let outcome = try await Self.run(["rebuild", "--database-url", Self.url(configuration)])
            #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
            #expect(outcome.stderr.contains("asking it to rebuild"))
            #expect(outcome.stdout.contains("through the running projector"), "\(outcome.stdout)")
            let state = try await Self.tableState(configuration)
            #expect(state.oid != oid)
            #expect(state.clean)
            let cacheClean = try await blockingValue {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try ProjectorFixtures.divergence(connection, cache: service.index).cache?.isClean == true
            }
            #expect(cacheClean, "the service reloaded its cache from the new table")
            await service.shutdown()
        }
    }

    @Test func rebuildThroughTheServersAdminRebuild() async throws {
        try await TestPostgres.withDatabase { configuration in
            let oid = try await Self.prepare(configuration, corrupt: false)
            var server = ExploreServerConfiguration(host: "127.0.0.1", port: 0)
            server.adminToken = "rebuild-token"
            let service = try await ExploreService.start(configuration: .init(
                postgres: configuration, pollInterval: .milliseconds(20), server: server))
            let tokenFile = FileManager.default.temporaryDirectory
                .appendingPathComponent("explore-token-\(UUID().uuidString)").path
            try "rebuild-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: tokenFile) }

            let outcome = try await Self.run(["rebuild", "--server", "127.0.0.1:\(service.port)",
                                              "--admin-token-file", tokenFile])
            #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
            #expect(outcome.stdout.contains("rebuilt through 127.0.0.1:\(service.port): serving 360 listings"),
                    "\(outcome.stdout)")
            #expect(try await Self.tableState(configuration).oid != oid)

            try "wrong-token".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let refused = try await Self.run(["rebuild", "--server", "127.0.0.1:\(service.port)",
                                              "--admin-token-file", tokenFile])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("error:"), "\(refused.stderr)")
            await service.shutdown()
        }
    }

    @Test func usageErrorsAreOneClearLine() async throws {
        let noToken = try await Self.run(["rebuild", "--server", "127.0.0.1:1"])
        #expect(noToken.status != 0)
        #expect(noToken.stderr.contains("--admin-token-file"))
        let both = try await Self.run(["rebuild", "--server", "127.0.0.1:1", "--admin-token-file", "/nonexistent",
                                       "--database-url", "postgres://u@127.0.0.1:1/db"])
        #expect(both.status != 0)
        #expect(both.stderr.contains("not both"))
        let noDatabase = try await Self.run(["rebuild"])
        #expect(noDatabase.status == 1)
        #expect(noDatabase.stderr.contains("no database given"))
        let missingFile = try await Self.run(["rebuild", "--server", "127.0.0.1:1", "--admin-token-file",
                                              "/nonexistent/token"])
        #expect(missingFile.status == 1)
        #expect(missingFile.stderr.contains("cannot read the admin token file"))

        try await TestPostgres.withDatabase { configuration in
            let unmigrated = try await Self.run(["rebuild", "--database-url", Self.url(configuration)])
            #expect(unmigrated.status == 1)
            #expect(unmigrated.stderr.contains("explore-projector migrate up"), "\(unmigrated.stderr)")
        }
        let help = try await Self.run(["rebuild", "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("--admin-token-file"))
    }
}

/// Runs blocking libpq work on a dispatch thread and returns its value.
private func blockingValue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try work() })
        }
    }
}
