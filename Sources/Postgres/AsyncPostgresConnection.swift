import Dispatch

/// A `PostgresConnection` for async code: every call runs on the connection's own serial dispatch queue, so
/// blocking libpq calls never occupy a thread of Swift's cooperative pool, and calls run one at a time in
/// submission order.
///
/// `@unchecked Sendable` is safe because the only mutable state, the wrapped `PostgresConnection` (and its
/// `PGconn`), is touched exclusively from blocks on `queue`. A serial queue runs one block at a time and orders
/// each block's memory effects before the next, which gives the single-owner access libpq requires even though
/// successive blocks may run on different threads.
public final class AsyncPostgresConnection: @unchecked Sendable {
    /// The settings the connection was opened with.
    public let configuration: PostgresConfiguration

    private let connection: PostgresConnection
    private let queue: DispatchQueue

    private init(connection: PostgresConnection, queue: DispatchQueue) {
        self.connection = connection
        self.configuration = connection.configuration
        self.queue = queue
    }

    /// Connects on a new dedicated queue.
    /// - Throws: the same errors as `PostgresConnection.connect`.
    public static func connect(_ configuration: PostgresConfiguration) async throws(PostgresError)
        -> AsyncPostgresConnection
    {
        let queue = DispatchQueue(label: "explore.postgres.connection")
        let result: Result<PostgresConnection, PostgresError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(PostgresError) in
                    try PostgresConnection.connect(configuration)
                })
            }
        }
        return AsyncPostgresConnection(connection: try result.get(), queue: queue)
    }

    /// Connects, retrying with `backoff` while the failure is retryable (server down, connection lost).
    ///
    /// Gives up after `maximumAttempts` attempts (nil: never) and rethrows the last error; credentials and URL
    /// errors are rethrown at once. Cancellation stops the loop and throws `CancellationError`.
    /// - Parameter onRetry: called before each wait with the error and the delay, e.g. to log.
    public static func connect(
        _ configuration: PostgresConfiguration, backoff: ReconnectBackoff, maximumAttempts: Int? = nil,
        onRetry: @Sendable (PostgresError, Duration) -> Void = { _, _ in }
    ) async throws -> AsyncPostgresConnection {
        var backoff = backoff
        var attempts = 0
        while true {
            try Task.checkCancellation()
            do {
                return try await connect(configuration)
            } catch {
                attempts += 1
                guard ReconnectBackoff.isRetryable(error), maximumAttempts.map({ attempts < $0 }) ?? true else {
                    throw error
                }
                let delay = backoff.nextDelay()
                onRetry(error, delay)
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Runs `body` with the underlying connection on the connection's queue; use it for transactions, COPY and
    /// other multi-step work. The connection must not escape `body`.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T)
        async throws -> T
    {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { try body(self.connection) })
            }
        }
        return try result.get()
    }

    /// `PostgresConnection.transaction` on the connection's queue: `body` runs between BEGIN and COMMIT, and a
    /// thrown error rolls back.
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T)
        async throws -> T
    {
        try await withConnection { connection in try connection.transaction { try body(connection) } }
    }

    /// Runs `body` on the connection's queue with typed errors.
    private func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws(PostgresError) -> T)
        async throws(PostgresError) -> T
    {
        let result: Result<T, PostgresError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(PostgresError) in try body(self.connection) })
            }
        }
        return try result.get()
    }

    /// `PostgresConnection.query` on the connection's queue.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws(PostgresError)
        -> PostgresResult
    {
        try await run { connection throws(PostgresError) in try connection.query(sql, parameters) }
    }

    /// `PostgresConnection.executeScript` on the connection's queue.
    public func executeScript(_ sql: String) async throws(PostgresError) {
        try await run { connection throws(PostgresError) in try connection.executeScript(sql) }
    }

    /// `PostgresConnection.listen` on the connection's queue.
    public func listen(_ channel: String) async throws(PostgresError) {
        try await run { connection throws(PostgresError) in try connection.listen(channel) }
    }

    /// `PostgresConnection.waitForNotifications` on the connection's queue. Other calls queue up behind the
    /// wait, so keep `timeout` short when the connection is shared.
    public func waitForNotifications(timeout: Duration) async throws(PostgresError) -> [PostgresNotification] {
        try await run { connection throws(PostgresError) in try connection.waitForNotifications(timeout: timeout) }
    }

    /// Whether the connection is open and healthy.
    public var isConnected: Bool {
        get async { await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: self.connection.isConnected) }
        } }
    }

    /// Closes the connection after the calls already queued.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.connection.close()
                continuation.resume()
            }
        }
    }
}
