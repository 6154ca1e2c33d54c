public import ExploreQuery
public import ExploreWire
public import NIOCore
import Foundation
import NIOPosix

/// A client-side failure with a stable code.
public struct ExploreClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// Could not connect.
        public static let connectFailed = Code(rawValue: 1)
        /// The server refused the handshake (see ``ExploreClientError/serverError``).
        public static let handshakeRefused = Code(rawValue: 2)
        /// The server answered the request with an `ERROR` frame (see ``ExploreClientError/serverError``).
        public static let server = Code(rawValue: 3)
        /// No answer within the timeout.
        public static let timeout = Code(rawValue: 4)
        /// The connection closed before the answer arrived.
        public static let connectionClosed = Code(rawValue: 5)
        /// The server sent bytes that are not valid protocol, or an answer of the wrong kind.
        public static let protocolViolation = Code(rawValue: 6)

        public var description: String {
            switch self {
            case .connectFailed: "connect_failed"
            case .handshakeRefused: "handshake_refused"
            case .server: "server"
            case .timeout: "timeout"
            case .connectionClosed: "connection_closed"
            case .protocolViolation: "protocol_violation"
            default: "code_\(rawValue)"
            }
        }
    }

    public var code: Code
    /// The server's error when ``code`` is ``Code/server`` or ``Code/handshakeRefused``.
    public var serverError: WireError?
    public var message: String

    public init(_ code: Code, _ message: String, serverError: WireError? = nil) {
        self.code = code
        self.message = message
        self.serverError = serverError
    }

    /// The query core's error, when the server refused a query.
    public var queryError: QueryError? { serverError?.queryError }

    public var description: String {
        if let serverError { return "\(code): \(serverError)" }
        return "\(code): \(message)"
    }

    static func wrapping(_ error: any Error) -> ExploreClientError {
        switch error {
        case let client as ExploreClientError: client
        case let wire as WireError: ExploreClientError(.protocolViolation, wire.description)
        case is ChannelError: ExploreClientError(.connectionClosed, "connection closed")
        default: ExploreClientError(.connectionClosed, "\(error)")
        }
    }
}

/// An async client for the explore protocol. One TCP connection; any number of requests may be in flight at once
/// (pipelined) and answers are matched by request id. Safe to share between tasks. It does not reconnect: a
/// long-lived caller uses ``ExploreClientPool``, which does.
public final class ExploreClient: Sendable {
    /// What the server announced in `HELLO_OK`.
    public let serverInfo: HelloAccepted
    /// Per-request timeout.
    public let timeout: TimeAmount

    private let channel: any Channel
    private let outbox: RequestOutbox
    private let group: (any EventLoopGroup)?
    private let closed = ClosedFlag()

    private init(channel: any Channel, outbox: RequestOutbox, serverInfo: HelloAccepted,
                 timeout: TimeAmount, group: (any EventLoopGroup)?) {
        self.channel = channel
        self.outbox = outbox
        self.serverInfo = serverInfo
        self.timeout = timeout
        self.group = group
    }

    /// Connects and performs the handshake.
    /// - Parameters:
    ///   - host: server address.
    ///   - port: server port.
    ///   - adminToken: token for `REBUILD` / `VERIFY`; `nil` for none.
    ///   - timeout: connect and per-request timeout (default 10 s).
    ///   - group: event loops to use; by default a private single-thread group closed with the client.
    /// - Throws: ``ExploreClientError`` (`connect_failed`, `handshake_refused`, `timeout`).
    public static func connect(host: String, port: Int, adminToken: String? = nil, timeout: TimeAmount = .seconds(10),
                               group: (any EventLoopGroup)? = nil) async throws(ExploreClientError) -> ExploreClient {
        let ownedGroup: (any EventLoopGroup)? = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        let eventLoopGroup = group ?? ownedGroup!
        do {
            let bootstrap = ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(FrameDecoder(maximumFrameSize: 64 << 20)),
                            ClientHandler(timeout: timeout),
                        ])
                    }
                }
            let channel: any Channel
            do {
                channel = try await bootstrap.connect(host: host, port: port).get()
            } catch {
                throw ExploreClientError(.connectFailed, "cannot connect to \(host):\(port): \(error)")
            }
            let outbox: RequestOutbox
            do {
                outbox = try await channel.eventLoop.submit {
                    RequestOutbox(handler: NIOLoopBound(
                        try channel.pipeline.syncOperations.handler(type: ClientHandler.self), eventLoop: channel.eventLoop))
                }.get()
            } catch {
                // The handlers are gone only when the connection closed right after it opened.
                channel.close(promise: nil)
                throw ExploreClientError(.connectFailed, "\(host):\(port) closed the connection as it opened")
            }
            let hello = Hello(adminToken: Array((adminToken ?? "").utf8))
            let answer: WireResponse
            do {
                answer = try await outbox.send(.hello(hello))
            } catch let error as ExploreClientError where error.code == .server {
                channel.close(promise: nil)
                throw ExploreClientError(.handshakeRefused, "handshake refused", serverError: error.serverError)
            }
            guard case .helloAccepted(let info) = answer else {
                channel.close(promise: nil)
                throw ExploreClientError(.protocolViolation, "expected HELLO_OK")
            }
            return ExploreClient(channel: channel, outbox: outbox, serverInfo: info, timeout: timeout,
                                 group: ownedGroup)
        } catch {
            try? await ownedGroup?.shutdownGracefully()
            throw ExploreClientError.wrapping(error)
        }
    }

    private func send(_ request: WireRequest) async throws(ExploreClientError) -> WireResponse {
        // After close() the event loop may be gone: nothing would ever answer.
        guard !closed.isClosed else { throw ExploreClientError(.connectionClosed, "the client is closed") }
        do {
            return try await outbox.send(request)
        } catch {
            throw ExploreClientError.wrapping(error)
        }
    }

    private static func unexpected() -> ExploreClientError {
        ExploreClientError(.protocolViolation, "answer of the wrong kind")
    }

    /// Whether the connection is open: not closed by ``close()``, by the server or by the network. A closed
    /// client stays closed; ``ExploreClientPool`` connects again for its caller.
    public var isOpen: Bool { !closed.isClosed && channel.isActive }

    /// A task executor running jobs on this connection's event loop.
    ///
    /// A task that prefers it (`try await withTaskExecutorPreference(client.executor) { … }`) hands its requests
    /// to the connection and is resumed by their answers on the loop's own thread: neither direction wakes
    /// another thread, which is most of a loopback round trip. For request loops with little work between
    /// requests: whatever the task runs there delays the connection's I/O.
    public var executor: any TaskExecutor { EventLoopTaskExecutor(eventLoop: channel.eventLoop) }

    /// Runs a search. A refused query throws ``ExploreClientError`` with ``ExploreClientError/queryError`` set.
    public func search(_ query: SearchQuery) async throws(ExploreClientError) -> SearchResult {
        guard case .searchResult(let result) = try await send(.search(query)) else { throw Self.unexpected() }
        return result
    }

    /// Rows by id with the given columns, in the order asked; unknown ids skipped.
    public func get(ids: [ListingID], columns: ColumnSet = .all) async throws(ExploreClientError) -> [ExploreListing] {
        guard case .rows(_, let rows) = try await send(.get(ids: ids, columns: columns)) else { throw Self.unexpected() }
        return rows
    }

    /// Server statistics.
    public func stats() async throws(ExploreClientError) -> ServerStatistics {
        guard case .stats(let stats) = try await send(.stats) else { throw Self.unexpected() }
        return stats
    }

    /// Round trip; returns the echoed payload.
    @discardableResult
    public func ping(_ payload: [UInt8] = []) async throws(ExploreClientError) -> [UInt8] {
        guard case .pong(let echoed) = try await send(.ping(payload)) else { throw Self.unexpected() }
        return echoed
    }

    /// Admin: rebuild the served index. Needs the admin token.
    public func rebuild() async throws(ExploreClientError) -> RebuildReport {
        guard case .rebuilt(let report) = try await send(.rebuild) else { throw Self.unexpected() }
        return report
    }

    /// Admin: compare the served index with its source. Needs the admin token.
    public func verify() async throws(ExploreClientError) -> VerifyReport {
        guard case .verified(let report) = try await send(.verify) else { throw Self.unexpected() }
        return report
    }

    /// Sends raw bytes (tests and tools that exercise protocol violations).
    public func sendRaw(_ bytes: [UInt8]) async throws(ExploreClientError) {
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        } catch {
            throw ExploreClientError.wrapping(error)
        }
    }

    /// Closes the connection; requests in flight fail with `connection_closed`.
    public func close() async {
        guard closed.markClosed() else { return }
        try? await channel.close()
        try? await group?.shutdownGracefully()
    }
}

/// Runs task jobs on an event loop (see ``ExploreClient/executor``).
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// Makes ``ExploreClient/close()`` idempotent.
final class ClosedFlag: @unchecked Sendable {
    // Safe: `closed` is only touched while holding `lock`.
    private let lock = NSLock()
    private var closed = false

    /// Whether ``markClosed()`` was called.
    var isClosed: Bool { lock.withLock { closed } }

    /// `true` the first time only.
    func markClosed() -> Bool {
        lock.withLock {
            defer { closed = true }
            return !closed
        }
    }
}

/// Requests handed over by any task to the connection's event loop.
///
/// A request costs the caller one lock and, only when the loop has nothing queued yet, one `execute`: every
/// request submitted before the loop gets to it is encoded into one buffer and written with one write and one
/// flush. The caller waits on an unsafe continuation (resumed exactly once: by its answer, its timeout or the
/// connection's end, whichever removes it from ``ClientHandler``'s pending table first), not on a promise.
final class RequestOutbox: @unchecked Sendable {
    // Safe: `queued` and `drainScheduled` are only touched while holding `lock`; `handler` is only dereferenced
    // on its event loop.
    struct Submission {
        var request: WireRequest
        var continuation: UnsafeContinuation<WireResponse, any Error>
    }

    private let lock = NSLock()
    private var queued: [Submission] = []
    private var drainScheduled = false
    private let handler: NIOLoopBound<ClientHandler>

    init(handler: NIOLoopBound<ClientHandler>) {
        self.handler = handler
    }

    /// Sends `request` and waits for its answer; an `ERROR` answer throws ``ExploreClientError`` (`server`).
    func send(_ request: WireRequest) async throws -> WireResponse {
        let response = try await withUnsafeThrowingContinuation { continuation in
            let schedule = lock.withLock {
                queued.append(Submission(request: request, continuation: continuation))
                defer { drainScheduled = true }
                return !drainScheduled
            }
            if schedule {
                handler.eventLoop.execute { [self] in handler.value.send(takeAll()) }
            }
        }
        if case .error(let error) = response {
            throw ExploreClientError(.server, error.message, serverError: error)
        }
        return response
    }

    /// Everything queued; the next submission schedules a new drain.
    private func takeAll() -> [Submission] {
        lock.withLock {
            drainScheduled = false
            defer { queued = [] }
            return queued
        }
    }
}

/// Matches answers to requests by id; lives on the channel's event loop.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var continuation: UnsafeContinuation<WireResponse, any Error>
        var deadline: NIODeadline
    }

    private let timeout: TimeAmount
    private var pending: [UInt32: Pending] = [:]
    /// Requests in the order sent with their deadlines. Every request gets the same timeout, so deadlines are in
    /// order too: one timer, armed for the oldest request still waiting, replaces a timer per request. Answered
    /// requests are dropped from the front as answers arrive (answers mostly come in request order).
    private var deadlines = CircularBuffer<(id: UInt32, deadline: NIODeadline)>()
    private var timer: Scheduled<Void>?
    private var nextID: UInt32 = 1
    private var context: ChannelHandlerContext?
    private var closedError: ExploreClientError?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Writes a batch of requests with one write and one flush.
    func send(_ batch: [RequestOutbox.Submission]) {
        guard let context, closedError == nil else {
            let error = closedError ?? ExploreClientError(.connectionClosed, "connection closed")
            for submission in batch { submission.continuation.resume(throwing: error) }
            return
        }
        let deadline = NIODeadline.now() + timeout
        var buffer = context.channel.allocator.buffer(capacity: 128 * batch.count)
        for submission in batch {
            var candidate = nextID
            while pending[candidate] != nil || candidate == 0 { candidate &+= 1 }
            let id = candidate
            nextID = id &+ 1
            pending[id] = Pending(continuation: submission.continuation, deadline: deadline)
            deadlines.append((id, deadline))
            WireCodec.encode(submission.request, requestID: id, into: &buffer)
        }
        armTimer(context: context)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func armTimer(context: ChannelHandlerContext) {
        guard timer == nil, let first = deadlines.first else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: first.deadline) {
            let handler = loopBound.value
            handler.timer = nil
            handler.expire(now: .now())
        }
    }

    /// Fails every request whose deadline has passed, then re-arms the timer for the oldest one left.
    private func expire(now: NIODeadline) {
        while let first = deadlines.first, first.deadline <= now {
            deadlines.removeFirst()
            if let entry = pending[first.id], entry.deadline == first.deadline {
                pending[first.id] = nil
                entry.continuation.resume(throwing: ExploreClientError(.timeout, "no answer within the timeout"))
            }
        }
        dropAnsweredDeadlines()
        if let context { armTimer(context: context) }
    }

    private func dropAnsweredDeadlines() {
        while let first = deadlines.first, pending[first.id]?.deadline != first.deadline {
            deadlines.removeFirst()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var body = unwrapInboundIn(data)
        do throws(WireError) {
            let header = try WireCodec.decodeHeader(&body)
            let response = try WireCodec.decodeResponse(header, &body)
            if let entry = pending.removeValue(forKey: header.requestID) {
                dropAnsweredDeadlines()
                entry.continuation.resume(returning: response)
            } else if case .error(let error) = response {
                // A connection-level error (id 0): fail everything; the server closes next.
                failAll(ExploreClientError(.server, error.message, serverError: error))
            }
        } catch {
            failAll(ExploreClientError(.protocolViolation, error.description))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(ExploreClientError.wrapping(error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(closedError ?? ExploreClientError(.connectionClosed, "connection closed"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: ExploreClientError) {
        if closedError == nil || error.code == .server { closedError = error }
        let entries = pending
        pending.removeAll()
        deadlines.removeAll()
        timer?.cancel()
        timer = nil
        for entry in entries.values { entry.continuation.resume(throwing: error) }
    }
}
