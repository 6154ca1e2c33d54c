public import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A PostgreSQL cluster of a test's own, started and stopped by `scripts/postgres-test-cluster`, for tests that
/// restart or stop the server (which they must never do to the cluster other tests share).
///
/// Commits are synchronous here (the shared test cluster runs with `synchronous_commit=off`): a test that
/// restarts the server with `-m immediate` checks that nothing a writer saw committed is lost.
public final class ThrowawayPostgresCluster: @unchecked Sendable {
    /// How `pg_ctl` stops the server before starting it again.
    public enum ShutdownMode: String, Sendable {
        /// Wait for clients to disconnect.
        case smart
        /// Roll back open transactions, disconnect clients, shut down cleanly.
        case fast
        /// Abort every server process; the next start runs crash recovery.
        case immediate
    }

    /// The superuser connection to the cluster's `postgres` database.
    public let configuration: PostgresConfiguration
    /// The cluster's directory (data, log, socket).
    public let directory: String
    private let workDirectory: String
    private var stopped = false

    /// The repository root, found from this file's path.
    public static let repositoryRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    private static var script: String { repositoryRoot + "/scripts/postgres-test-cluster" }

    private init(configuration: PostgresConfiguration, directory: String, workDirectory: String) {
        self.configuration = configuration
        self.directory = directory
        self.workDirectory = workDirectory
    }

    /// Starts a new cluster (initdb, pg_ctl start on a free port of 127.0.0.1).
    public static func start() throws -> ThrowawayPostgresCluster {
        let work = try ChildProcess.temporaryDirectory(prefix: "explore-throwaway")
        let outcome = try ChildProcess.run(
            script, ["start"], environment: ["EXPLORE_TEST_POSTGRES_OPTIONS": "-c synchronous_commit=on"],
            outputPrefix: work + "/start")
        guard outcome.termination == .exited(0) else {
            throw ChildProcess.Failure(description: "postgres-test-cluster start \(outcome.termination): "
                + outcome.errors.suffix(2_000))
        }
        func exported(_ name: String) -> String? {
            for line in outcome.output.split(separator: "\n") where line.hasPrefix("export \(name)='") {
                return String(line.dropFirst("export \(name)='".count).dropLast())
            }
            return nil
        }
        guard let url = exported(TestPostgres.environmentVariable), let directory = exported("EXPLORE_TEST_POSTGRES_DIR")
        else {
            throw ChildProcess.Failure(description: "postgres-test-cluster start printed no URL: \(outcome.output)")
        }
        return ThrowawayPostgresCluster(
            configuration: try PostgresConfiguration(url: url), directory: directory, workDirectory: work)
    }

    /// Stops the server with `mode` and starts it again on the same port; returns once it accepts connections.
    public func restart(_ mode: ShutdownMode) throws {
        let outcome = try ChildProcess.run(
            Self.script, ["restart", directory, mode.rawValue], outputPrefix: workDirectory + "/restart")
        guard outcome.termination == .exited(0) else {
            throw ChildProcess.Failure(description: "postgres-test-cluster restart \(mode.rawValue) "
                + "\(outcome.termination): \(outcome.errors.suffix(2_000))")
        }
    }

    /// Creates a database named `name` and returns its configuration.
    public func createDatabase(_ name: String = TestPostgres.uniqueName()) throws -> PostgresConfiguration {
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        try connection.executeScript(
            "CREATE DATABASE \(try PostgresIdentifier.quoted(name)) TEMPLATE template0 ENCODING 'UTF8'")
        return configuration.with(database: name)
    }

    /// Stops the server and removes its directory. Safe to call more than once.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? ChildProcess.run(Self.script, ["stop", directory], outputPrefix: workDirectory + "/stop")
        for name in ["start", "restart", "stop"] {
            unlink("\(workDirectory)/\(name).stdout")
            unlink("\(workDirectory)/\(name).stderr")
        }
        rmdir(workDirectory)
    }

    /// Starts a cluster, runs `body`, and stops the cluster whatever happens.
    public static func with<T>(_ body: (ThrowawayPostgresCluster) throws -> T) throws -> T {
        let cluster = try start()
        defer { cluster.stop() }
        return try body(cluster)
    }

    deinit { stop() }
}
