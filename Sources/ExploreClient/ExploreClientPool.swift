public import ExploreQuery
public import ExploreWire
public import NIOCore
import NIOPosix
import Synchronization

/// A long-lived client for a service that calls the explore server all day: a fixed number of connections,
/// each opened on first use and opened again after it fails, with requests spread over them in turn.
///
/// An ``ExploreClient`` is one connection: once the server restarts (a deploy) or the network drops it, every
/// call fails until the caller connects again. The pool does that for its caller:
/// - a request whose connection has closed opens a new one first;
/// - a read (`SEARCH`, `GET`, `STATS`, `PING`) that fails because its connection ended (`connection_closed`, or
///   the server's `idle_timeout` or `shutting_down`) is sent once more on a new connection: a read can be
///   repeated. The admin `REBUILD` and `VERIFY` are never sent twice, and a `timeout` is never retried (it would
///   double a slow server's load);
/// - after a failed connect, the connection waits before trying again (100 ms, doubling up to 5 s); meanwhile
///   requests go to the other connections, or, when every one is waiting, fail at once with the connect's error
///   instead of each waiting for a connect timeout.
public final class ExploreClientPool: Sendable {
    /// Where to connect and how many connections to keep.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Token for `REBUILD` / `VERIFY`; `nil` for none.
        public var adminToken: String?
        /// Connect and per-request timeout.
        public var timeout: TimeAmount
        /// Connections, used in turn (each pipelines any number of requests).
        public var connections: Int

        public init(host: String, port: Int, adminToken: String? = nil, timeout: TimeAmount = .seconds(10),
                    connections: Int = 2) {
            self.host = host
            self.port = port
            self.adminToken = adminToken
            self.timeout = timeout
            self.connections = connections
        }
    }

    public let configuration: Configuration
    private let slots: [ConnectionSlot]
    private let next = Atomic<Int>(0)
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let isClosed = Atomic<Bool>(false)

    /// Creates the pool; no connection opens before the first request.
    /// - Parameter group: event loops for the connections; by default a private one-thread group, shut down by
    ///   ``close()``.
    public init(configuration: Configuration, group: (any EventLoopGroup)? = nil) {
        precondition(configuration.connections >= 1, "a pool needs at least one connection")
        self.configuration = configuration
        let loops = group ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = loops
        ownsGroup = group == nil
        let connect: ConnectionSlot.Connect = { () async throws(ExploreClientError) -> ExploreClient in
            try await ExploreClient.connect(host: configuration.host, port: configuration.port,
                                            adminToken: configuration.adminToken, timeout: configuration.timeout,
                                            group: loops)
        }
        slots = (0..<configuration.connections).map { _ in ConnectionSlot(connect: connect) }
    }

    /// Runs a search (see ``ExploreClient/search(_:)``).
    public func search(_ query: SearchQuery) async throws(ExploreClientError) -> SearchResult {
        try await run(repeatable: true) { client throws(ExploreClientError) in try await client.search(query) }
    }

    /// Rows by id (see ``ExploreClient/get(ids:columns:)``).
    public func get(ids: [ListingID], columns: ColumnSet = .all) async throws(ExploreClientError) -> [ExploreListing] {
        try await run(repeatable: true) { client throws(ExploreClientError) in
            try await client.get(ids: ids, columns: columns)
        }
    }

    /// Server statistics.
    public func stats() async throws(ExploreClientError) -> ServerStatistics {
        try await run(repeatable: true) { client throws(ExploreClientError) in try await client.stats() }
    }

    /// Round trip; returns the echoed payload.
    @discardableResult
    public func ping(_ payload: [UInt8] = []) async throws(ExploreClientError) -> [UInt8] {
        try await run(repeatable: true) { client throws(ExploreClientError) in try await client.ping(payload) }
    }

    /// Admin: rebuild the served index; never sent twice.
    public func rebuild() async throws(ExploreClientError) -> RebuildReport {
        try await run(repeatable: false) { client throws(ExploreClientError) in try await client.rebuild() }
    }

    /// Admin: compare the served index with its source; never sent twice.
    public func verify() async throws(ExploreClientError) -> VerifyReport {
        try await run(repeatable: false) { client throws(ExploreClientError) in try await client.verify() }
    }

    /// Closes every connection; requests in flight fail with `connection_closed`, later ones too.
    public func close() async {
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for slot in slots { await slot.close() }
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    private func run<T>(
        repeatable: Bool, _ body: (ExploreClient) async throws(ExploreClientError) -> T
    ) async throws(ExploreClientError) -> T {
        // In turn, but past connections waiting out a failed connect while another one can serve.
        let first = UInt(bitPattern: next.wrappingAdd(1, ordering: .relaxed).oldValue)
        let now = ContinuousClock.now
        let candidates = (0..<UInt(slots.count)).lazy.map { self.slots[Int((first &+ $0) % UInt(self.slots.count))] }
        let slot = candidates.first { !$0.isBackingOff(now: now) } ?? candidates[candidates.startIndex]
        let client = try await connection(slot)
        do {
            return try await body(client)
        } catch where repeatable && Self.endedConnection(error) {
            return try await body(try await connection(slot))
        }
    }

    /// Whether `error` says the connection ended under the request (a restarting server, the server's idle
    /// timeout racing the request, the network) rather than anything about the request itself.
    static func endedConnection(_ error: ExploreClientError) -> Bool {
        if error.code == .connectionClosed { return true }
        return error.serverError.map { [.idleTimeout, .shuttingDown].contains($0.code) } ?? false
    }

    private func connection(_ slot: ConnectionSlot) async throws(ExploreClientError) -> ExploreClient {
        guard !isClosed.load(ordering: .acquiring) else {
            throw ExploreClientError(.connectionClosed, "the pool is closed")
        }
        return try await slot.client(now: .now)
    }
}

/// One connection of a pool: connected, being connected (callers share that attempt), or waiting out the
/// back-off after a failed attempt.
final class ConnectionSlot: Sendable {
    typealias Connect = @Sendable () async throws(ExploreClientError) -> ExploreClient
    typealias Attempt = Task<Result<ExploreClient, ExploreClientError>, Never>

    enum State {
        /// `failures` connects in a row failed, the last with `lastError`; the next may start at `retryAt`.
        case idle(failures: Int, retryAt: ContinuousClock.Instant, lastError: ExploreClientError?)
        case connecting(Attempt)
        case connected(ExploreClient)
        case closed
    }

    private enum Step {
        case use(ExploreClient)
        case wait(Attempt)
        case fail(ExploreClientError)
    }

    private let state = Mutex<State>(.idle(failures: 0, retryAt: .now, lastError: nil))
    private let connect: Connect

    init(connect: @escaping Connect) {
        self.connect = connect
    }

    /// Wait after `failures` failed connects in a row: 100 ms, doubling, at most 5 s.
    static func backoff(failures: Int) -> Duration {
        min(.milliseconds(100 << min(max(failures - 1, 0), 6)), .seconds(5))
    }

    /// Whether a connect failed and the next may not start yet: a request here would fail at once.
    func isBackingOff(now: ContinuousClock.Instant) -> Bool {
        state.withLock { state in
            guard case .idle(_, let retryAt, let lastError) = state else { return false }
            return lastError != nil && now < retryAt
        }
    }

    /// The open connection, after connecting when there is none (or joining an attempt in progress).
    func client(now: ContinuousClock.Instant) async throws(ExploreClientError) -> ExploreClient {
        let step = state.withLock { state -> Step in
            switch state {
            case .connected(let client) where client.isOpen:
                return .use(client)
            case .connected:
                return .wait(start(failures: 0, in: &state))
            case .connecting(let attempt):
                return .wait(attempt)
            case .idle(let failures, let retryAt, let lastError):
                if now < retryAt, let lastError { return .fail(lastError) }
                return .wait(start(failures: failures, in: &state))
            case .closed:
                return .fail(ExploreClientError(.connectionClosed, "the pool is closed"))
            }
        }
        switch step {
        case .use(let client): return client
        case .fail(let error): throw error
        case .wait(let attempt): return try await attempt.value.get()
        }
    }

    private func start(failures: Int, in state: inout State) -> Attempt {
        let attempt = Attempt {
            let result: Result<ExploreClient, ExploreClientError>
            do throws(ExploreClientError) {
                result = .success(try await connect())
            } catch {
                result = .failure(error)
            }
            self.finish(result, failures: failures)
            return result
        }
        state = .connecting(attempt)
        return attempt
    }

    private func finish(_ result: Result<ExploreClient, ExploreClientError>, failures: Int) {
        state.withLock { state in
            // Closed meanwhile: `close()` saw this attempt and closes what it opened.
            guard case .connecting = state else { return }
            switch result {
            case .success(let client):
                state = .connected(client)
            case .failure(let error):
                state = .idle(failures: failures + 1, retryAt: .now + Self.backoff(failures: failures + 1),
                              lastError: error)
            }
        }
    }

    func close() async {
        let previous = state.withLock { state in
            defer { state = .closed }
            return state
        }
        switch previous {
        case .connected(let client):
            await client.close()
        case .connecting(let attempt):
            if case .success(let client) = await attempt.value { await client.close() }
        case .idle, .closed:
            break
        }
    }
}
