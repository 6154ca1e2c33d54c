import Postgres
import TestSupport
import Testing

@Suite("Async PostgreSQL connection", .serialized, .timeLimit(.minutes(3)))
struct AsyncPostgresConnectionTests {
    @Test func concurrentCallsAreSerializedAndAllAnswered() async throws {
        try await TestPostgres.withDatabase { configuration in
            let connection = try await AsyncPostgresConnection.connect(configuration)
            try await connection.executeScript("CREATE TABLE t (id int PRIMARY KEY)")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in 0..<200 {
                    group.addTask { try await connection.query("INSERT INTO t VALUES ($1)", [id]) }
                }
                try await group.waitForAll()
            }
            let sum = try await connection.query("SELECT sum(id) FROM t")[0].decode(0, as: Int.self)
            #expect(sum == 199 * 200 / 2)

            struct Abort: Error {}
            await #expect(throws: Abort.self) {
                try await connection.transaction { connection in
                    try connection.query("DELETE FROM t")
                    throw Abort()
                }
            }
            let count = try await connection.withConnection {
                try $0.query("SELECT count(*) FROM t")[0].decode(0, as: Int.self)
            }
            #expect(count == 200)

            let error = await #expect(throws: PostgresError.self) {
                try await connection.query("SELECT * FROM nowhere")
            }
            #expect(error?.sqlState == "42P01")
            #expect(await connection.isConnected)
            await connection.close()
            #expect(await !connection.isConnected)
            let closed = await #expect(throws: PostgresError.self) { try await connection.query("SELECT 1") }
            #expect(closed?.code == .connectionClosed)
        }
    }

    /// More blocking waits than the machine has cores: if they ran on the cooperative pool, the notifier task
    /// could not run until every wait timed out, and the listeners would receive nothing.
    @Test func blockingWaitsDoNotStarveOtherTasks() async throws {
        let configuration = try TestPostgres.serverConfiguration()
        let channel = TestPostgres.uniqueName(prefix: "async")
        let listenerCount = 8
        var listeners: [AsyncPostgresConnection] = []
        for _ in 0..<listenerCount {
            let listener = try await AsyncPostgresConnection.connect(configuration)
            try await listener.listen(channel)
            listeners.append(listener)
        }
        let notifier = try await AsyncPostgresConnection.connect(configuration)
        let payloads = try await withThrowingTaskGroup(of: [String].self) { group in
            for listener in listeners {
                group.addTask { try await listener.waitForNotifications(timeout: .seconds(60)).map(\.payload) }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(200))
                try await notifier.query("SELECT pg_notify($1, 'wake')", [channel])
                return []
            }
            var all: [[String]] = []
            for try await payloads in group { all.append(payloads) }
            return all
        }
        #expect(payloads.filter { $0 == ["wake"] }.count == listenerCount)
        for listener in listeners { await listener.close() }
        await notifier.close()
    }

    @Test func reconnectLoopRetriesTransientFailuresOnly() async throws {
        var down = try TestPostgres.serverConfiguration()
        down.port = try PostgresConnectionErrorTests.closedPort()
        let fast = ReconnectBackoff(initial: .milliseconds(1), maximum: .milliseconds(5), jitter: 0.5)

        let retries = RetryCounter()
        let error = await #expect(throws: PostgresError.self) {
            try await AsyncPostgresConnection.connect(down, backoff: fast, maximumAttempts: 3) { _, _ in
                retries.increment()
            }
        }
        #expect(error?.code == .connectionFailed)
        #expect(retries.value == 2)

        var wrongPassword = try TestPostgres.serverConfiguration()
        wrongPassword.password = "nope"
        let noRetries = RetryCounter()
        let authError = await #expect(throws: PostgresError.self) {
            try await AsyncPostgresConnection.connect(wrongPassword, backoff: fast, maximumAttempts: 5) { _, _ in
                noRetries.increment()
            }
        }
        #expect(authError?.code == .authenticationFailed)
        #expect(noRetries.value == 0)

        let connection = try await AsyncPostgresConnection.connect(
            try TestPostgres.serverConfiguration(), backoff: fast, maximumAttempts: 1)
        #expect(try await connection.query("SELECT 1")[0].decode(0, as: Int.self) == 1)
        await connection.close()
    }
}

/// Counts `onRetry` calls from the reconnect loop.
final class RetryCounter: @unchecked Sendable {
    // The reconnect loop calls onRetry sequentially from one task, and the test reads the value after the loop
    // has returned, so there are no concurrent accesses; the lock-free counter is safe here.
    private(set) var value = 0
    func increment() { value += 1 }
}
