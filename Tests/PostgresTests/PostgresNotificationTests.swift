import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL notifications", .serialized, .timeLimit(.minutes(2)))
struct PostgresNotificationTests {
    @Test func listenReceivesNotificationsFromAnotherConnection() throws {
        let configuration = try TestPostgres.serverConfiguration()
        let listener = try PostgresConnection.connect(configuration)
        defer { listener.close() }
        let notifier = try PostgresConnection.connect(configuration)
        defer { notifier.close() }
        // A channel name that needs quoting: proves the identifier is quoted, not interpolated raw.
        let channel = TestPostgres.uniqueName(prefix: "Chan \"quoted\"")
        try listener.listen(channel)

        let payloads = (0..<20).map { "payload \($0) ✓ ' ; --" }
        for payload in payloads { try notifier.notify(channel, payload: payload) }

        var received: [PostgresNotification] = []
        for _ in 0..<100 {
            guard received.count < payloads.count else { break }
            received += try listener.waitForNotifications(timeout: .seconds(5))
        }
        #expect(received.map(\.payload) == payloads)
        #expect(received.allSatisfy { $0.channel == channel && $0.processID == notifier.backendProcessID })
    }

    @Test func waitTimesOutWithNothing() throws {
        let listener = try PostgresConnection.connect(try TestPostgres.serverConfiguration())
        defer { listener.close() }
        try listener.listen(TestPostgres.uniqueName(prefix: "silent"))
        #expect(try listener.waitForNotifications(timeout: .milliseconds(100)).isEmpty)
        #expect(try listener.waitForNotifications(timeout: .zero).isEmpty)
    }

    @Test func notificationsQueuedDuringQueriesAreKept() throws {
        let configuration = try TestPostgres.serverConfiguration()
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        let channel = TestPostgres.uniqueName(prefix: "self")
        try connection.listen(channel)
        // Notifying ourselves: the notification arrives with the query's response and waits in libpq's queue.
        try connection.notify(channel, payload: "a")
        try connection.query("SELECT 1")
        let received = try connection.waitForNotifications(timeout: .seconds(5))
        #expect(received.map(\.payload) == ["a"])
        try connection.unlisten(channel)
        try connection.notify(channel, payload: "b")
        #expect(try connection.waitForNotifications(timeout: .milliseconds(50)).isEmpty)
    }

    @Test func invalidChannelsAreRejected() throws {
        let connection = try PostgresConnection.connect(try TestPostgres.serverConfiguration())
        defer { connection.close() }
        for channel in ["", String(repeating: "x", count: 64), "a\u{0}b"] {
            let error = #expect(throws: PostgresError.self) { try connection.listen(channel) }
            #expect(error?.code == .invalidIdentifier)
        }
    }
}
