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
/// (pipelined) and answers are matched by request id. Safe to share between tasks.
public final class ExploreClient: Sendable {
    /// What the server announced in `HELLO_OK`.
    public let serverInfo: HelloAccepted
    /// Per-request timeout.
    public let timeout: TimeAmount

    private let channel: any Channel
    private let handler: NIOLoopBound<ClientHandler>
    private let group: (any EventLoopGroup)?
    private let closed = ClosedFlag()

    private init(channel: any Channel, handler: NIOLoopBound<ClientHandler>, serverInfo: HelloAccepted,
                 timeout: TimeAmount, group: (any EventLoopGroup)?) {
        self.channel = channel
        self.handler = handler
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
            let handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientHandler.self),
                             eventLoop: channel.eventLoop)
            }.get()
            let hello = Hello(adminToken: Array((adminToken ?? "").utf8))
            let answer: WireResponse
            do {
                answer = try await send(.hello(hello), channel: channel, handler: handler)
            } catch let error as ExploreClientError where error.code == .server {
                channel.close(promise: nil)
                throw ExploreClientError(.handshakeRefused, "handshake refused", serverError: error.serverError)
            }
            guard case .helloAccepted(let info) = answer else {
                channel.close(promise: nil)
                throw ExploreClientError(.protocolViolation, "expected HELLO_OK")
            }
            return ExploreClient(channel: channel, handler: handler, serverInfo: info, timeout: timeout,
                                 group: ownedGroup)
        } catch {
            try? await ownedGroup?.shutdownGracefully()
            throw ExploreClientError.wrapping(error)
        }
    }

    private static func send(_ request: WireRequest, channel: any Channel,
                             handler: NIOLoopBound<ClientHandler>) async throws -> WireResponse {
        let promise = channel.eventLoop.makePromise(of: WireResponse.self)
        channel.eventLoop.execute {
            handler.value.send(request, promise: promise)
        }
        let response = try await promise.futureResult.get()
        if case .error(let error) = response {
            throw ExploreClientError(.server, error.message, serverError: error)
        }
        return response
    }

    private func send(_ request: WireRequest) async throws(ExploreClientError) -> WireResponse {
        do {
            return try await Self.send(request, channel: channel, handler: handler)
        } catch {
            throw ExploreClientError.wrapping(error)
        }
    }

    private static func unexpected() -> ExploreClientError {
        ExploreClientError(.protocolViolation, "answer of the wrong kind")
    }

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

/// Makes ``ExploreClient/close()`` idempotent.
final class ClosedFlag: @unchecked Sendable {
    // Safe: `isClosed` is only touched while holding `lock`.
    private let lock = NSLock()
    private var isClosed = false

    /// `true` the first time only.
    func markClosed() -> Bool {
        lock.withLock {
            defer { isClosed = true }
            return !isClosed
        }
    }
}

/// Matches answers to requests by id; lives on the channel's event loop.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<WireResponse>
        var timeout: Scheduled<Void>?
    }

    private let timeout: TimeAmount
    private var pending: [UInt32: Pending] = [:]
    private var nextID: UInt32 = 1
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var closedError: ExploreClientError?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Writes a request; the flush is coalesced with every other request sent in the same event-loop tick.
    func send(_ request: WireRequest, promise: EventLoopPromise<WireResponse>) {
        guard let context, closedError == nil else {
            promise.fail(closedError ?? ExploreClientError(.connectionClosed, "connection closed"))
            return
        }
        var candidate = nextID
        while pending[candidate] != nil || candidate == 0 { candidate &+= 1 }
        let id = candidate
        nextID = id &+ 1
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(in: timeout) {
            if let entry = loopBound.value.pending.removeValue(forKey: id) {
                entry.promise.fail(ExploreClientError(.timeout, "no answer within the timeout"))
            }
        }
        pending[id] = Pending(promise: promise, timeout: timer)
        var buffer = context.channel.allocator.buffer(capacity: 64)
        WireCodec.encode(request, requestID: id, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.execute {
                let handler = loopBound.value
                handler.flushScheduled = false
                handler.context?.flush()
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var body = unwrapInboundIn(data)
        do throws(WireError) {
            let header = try WireCodec.decodeHeader(&body)
            let response = try WireCodec.decodeResponse(header, &body)
            if let entry = pending.removeValue(forKey: header.requestID) {
                entry.timeout?.cancel()
                entry.promise.succeed(response)
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
        for entry in entries.values {
            entry.timeout?.cancel()
            entry.promise.fail(error)
        }
    }
}
