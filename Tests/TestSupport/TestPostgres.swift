public import Postgres
import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Access to the throwaway PostgreSQL cluster the test scripts start, and per-test databases inside it.
public enum TestPostgres {
    /// The environment variable holding the cluster's URL.
    public static let environmentVariable = "EXPLORE_TEST_POSTGRES_URL"

    /// Why a test cannot reach its cluster.
    public struct Unavailable: Error, CustomStringConvertible {
        /// What is missing and how to provide it.
        public let description: String
    }

    /// The cluster URL from `EXPLORE_TEST_POSTGRES_URL`.
    /// - Throws: `Unavailable` with instructions when the variable is unset, or the URL's parse error.
    public static func serverConfiguration() throws -> PostgresConfiguration {
        guard let raw = getenv(environmentVariable), raw.pointee != 0 else {
            throw Unavailable(description: """
                \(environmentVariable) is not set: run scripts/test, which starts a throwaway PostgreSQL \
                (or eval "$(scripts/postgres-test-cluster start)" first)
                """)
        }
        return try PostgresConfiguration(url: String(cString: raw))
    }

    /// Creates a fresh, uniquely named database, runs `body` with its configuration, and drops the database
    /// afterwards (`WITH (FORCE)`, so connections the body leaked do not keep it alive).
    public static func withDatabase<T>(_ body: (PostgresConfiguration) throws -> T) throws -> T {
        let (server, name) = try createDatabase()
        defer { dropDatabase(name, server: server) }
        return try body(server.with(database: name))
    }

    /// Async variant of `withDatabase`.
    /// Creating and dropping run on a dispatch queue, so the blocking libpq calls stay off the cooperative pool.
    public static func withDatabase<T>(_ body: (PostgresConfiguration) async throws -> T) async throws -> T {
        let (server, name) = try await offCooperativePool { try createDatabase() }
        let outcome: Result<T, any Error>
        do {
            outcome = .success(try await body(server.with(database: name)))
        } catch {
            outcome = .failure(error)
        }
        await offCooperativePool { dropDatabase(name, server: server) }
        return try outcome.get()
    }

    private static func offCooperativePool<R: Sendable>(_ work: @escaping @Sendable () throws -> R) async throws
        -> R
    {
        let result: Result<R, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Result { try work() }) }
        }
        return try result.get()
    }

    private static func offCooperativePool(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                work()
                continuation.resume()
            }
        }
    }

    /// A name no other test uses: a prefix, the process ID and random bits.
    public static func uniqueName(prefix: String = "explore_test") -> String {
        let random = UInt64.random(in: 0...UInt64.max)
        return "\(prefix)_\(getpid())_\(String(random, radix: 36))"
    }

    private static func createDatabase() throws -> (PostgresConfiguration, String) {
        let server = try serverConfiguration()
        let name = uniqueName()
        let connection = try PostgresConnection.connect(server)
        defer { connection.close() }
        // template0 is never connected to, so concurrent CREATE DATABASE calls cannot collide on the template.
        try connection.executeScript(
            "CREATE DATABASE \(try PostgresIdentifier.quoted(name)) TEMPLATE template0 ENCODING 'UTF8'")
        return (server, name)
    }

    private static func dropDatabase(_ name: String, server: PostgresConfiguration) {
        // Cleanup must not mask the test's own outcome; a leftover database dies with the throwaway cluster.
        guard let connection = try? PostgresConnection.connect(server) else { return }
        defer { connection.close() }
        if let quoted = try? PostgresIdentifier.quoted(name) {
            try? connection.executeScript("DROP DATABASE IF EXISTS \(quoted) WITH (FORCE)")
        }
    }
}
