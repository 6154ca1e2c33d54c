import ExploreQuery
import ExploreWire
import NIOCore

/// Sent down a connection's pipeline when the server shuts down gracefully.
struct ShutdownRequested: Sendable {}

/// One client connection: handshake, request dispatch, back-pressure and error policy.
///
/// Query execution runs inline on the event loop. Measured both ways in one process (release, 919,989 demo
/// listings, the bench's explore mix, 8 connections x 16 pipelined, this shared 2-core machine under a load average
/// of ~7 from other work; three interleaved rounds, each configuration against the same index and the same
/// client): inline on 2 loops cost 601-611 µs of process CPU per query (client + server) at maximum load, a
/// 2-thread `NIOThreadPool` behind the same 2 loops 647-684 µs (two cross-thread hand-offs per query, each a
/// wake-up), with no better latency: open-loop p99 at the same half-load rate was 10.1 / 6.2 / 8.3 ms inline and
/// 9.3 / 10.7 / 6.1 ms with the pool (the query core's own p50 was ~430 µs in-process in the same rounds). On two
/// cores a pool adds no CPU to run queries on, only hand-offs, so queries run where their frame is decoded. The
/// price is head-of-line blocking behind a slow query on the same loop, bounded by the engine's worst query.
/// One event loop per core: a single loop measured 574-611 µs CPU per query and similar throughput only because
/// other processes held the second core; with the machine to itself a second loop runs a second query at once.
/// Admin operations (seconds) never run inline: they go to a `Task` and answer when done, and the connection keeps
/// serving meanwhile.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let processor: RequestProcessor
    private let shared: ServerSharedState
    private let admin: (any AdminHandler)?

    private var established = false
    private var adminGranted = false
    private var version: UInt8 = 0
    /// Requests accepted whose answer is not written yet (only admin operations stay in flight across reads).
    private var inFlight = 0
    /// A read was asked for while back-pressure held it back.
    private var readPending = false
    private var closing = false
    private var shutdownRequested = false
    /// Frames already read while the peer was not reading its answers; processed once the channel is writable
    /// again. At most one socket read's worth of frames, since reading stops while this is non-empty.
    private var queuedFrames = CircularBuffer<ByteBuffer>()
    /// Answers encoded since the last flush: every answer to one read burst of pipelined requests goes out in one
    /// write and one flush, and the buffer is reused (the socket write has normally completed by the next burst,
    /// so clearing it does not reallocate).
    private var output = ByteBuffer()
    /// Answers are pushed to the channel early once this much is buffered, so the channel's write-buffer water
    /// marks (back-pressure) still see a burst's answers while it is being processed.
    private static let outputFlushThreshold = 64 * 1024
    /// A buffer that grew past this (a burst of large answers) is not kept for reuse, so an idle connection holds
    /// at most this much.
    private static let outputRetainedCapacity = 128 * 1024
    /// Starting capacity; the buffer grows to the connection's usual burst and is then reused.
    private static let outputInitialCapacity = 4 * 1024

    init(processor: RequestProcessor, shared: ServerSharedState, admin: (any AdminHandler)?) {
        self.processor = processor
        self.shared = shared
        self.admin = admin
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var body = unwrapInboundIn(data)
        guard established else {
            handshake(context: context, body: &body)
            return
        }
        // Answers are only computed while the outbound buffer is below its high-water mark; otherwise the frame
        // waits, so a client that never reads cannot make the server buffer answers without bound.
        guard queuedFrames.isEmpty, context.channel.isWritable else {
            queuedFrames.append(body)
            return
        }
        process(context: context, body: &body)
    }

    private func process(context: ChannelHandlerContext, body: inout ByteBuffer) {
        let start = NIODeadline.now()
        let header: FrameHeader
        do {
            header = try WireCodec.decodeHeader(&body)
        } catch {
            write(context: context, .error(error), requestID: 0)
            shared.metrics.record(opcode: nil, error: error.code, nanoseconds: 0)
            return
        }
        let request: WireRequest
        do {
            request = try WireCodec.decodeRequest(header, &body)
        } catch {
            answer(context: context, .error(error), header: header, start: start)
            return
        }
        if case .stats = request {
            answer(context: context, .stats(statistics()), header: header, start: start)
            return
        }
        switch processor.process(request, adminGranted: adminGranted) {
        case .respond(let response):
            answer(context: context, response, header: header, start: start)
        case .admin(let operation):
            runAdmin(operation, header: header, start: start, context: context)
        }
    }

    /// Writes the answer to a request and records it in the request metrics.
    private func answer(context: ChannelHandlerContext, _ response: WireResponse, header: FrameHeader,
                        start: NIODeadline) {
        write(context: context, response, requestID: header.requestID)
        var failure: WireError.Code?
        if case .error(let error) = response { failure = error.code }
        shared.metrics.record(opcode: header.opcode, error: failure, nanoseconds: Self.elapsed(since: start))
    }

    private static func elapsed(since start: NIODeadline) -> UInt64 {
        UInt64(max((NIODeadline.now() - start).nanoseconds, 0))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput(context: context)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context.channel.allocator.buffer(capacity: Self.outputInitialCapacity)
    }

    private func handshake(context: ChannelHandlerContext, body: inout ByteBuffer) {
        let start = NIODeadline.now()
        let header: FrameHeader
        let request: WireRequest
        do throws(WireError) {
            header = try WireCodec.decodeHeader(&body)
            guard header.opcode == .hello else {
                throw WireError(.badHandshake, "the first frame must be HELLO")
            }
            request = try WireCodec.decodeRequest(header, &body)
        } catch {
            shared.metrics.record(opcode: .hello, error: .badHandshake, nanoseconds: Self.elapsed(since: start))
            closeWithError(context: context, WireError(.badHandshake, "bad handshake: \(error.message)"))
            return
        }
        guard case .hello(let hello) = request else { return }
        let supported = WireProtocol.supportedVersions
        let low = max(hello.minimumVersion, supported.lowerBound)
        let high = min(hello.maximumVersion, supported.upperBound)
        guard low <= high else {
            shared.metrics.record(opcode: .hello, error: .unsupportedVersion, nanoseconds: Self.elapsed(since: start))
            closeWithError(context: context, WireError(
                .unsupportedVersion, "server speaks versions \(supported.lowerBound)...\(supported.upperBound)"),
                requestID: header.requestID)
            return
        }
        established = true
        version = high
        adminGranted = RequestProcessor.tokenMatches(offered: hello.adminToken,
                                                     configured: processor.configuration.adminToken)
        let configuration = processor.configuration
        write(context: context, .helloAccepted(HelloAccepted(
            version: version, features: configuration.features, adminGranted: adminGranted,
            maximumFrameSize: UInt32(clamping: configuration.maximumFrameSize),
            maximumInFlight: UInt32(clamping: configuration.maximumInFlight),
            serverVersion: configuration.serverVersion)), requestID: header.requestID)
        shared.metrics.record(opcode: .hello, error: nil, nanoseconds: Self.elapsed(since: start))
    }

    private func statistics() -> ServerStatistics {
        let backend = processor.backend.statistics()
        return ServerStatistics(
            listingCount: UInt64(max(backend.listingCount, 0)), memoryBytes: UInt64(max(backend.memoryBytes, 0)),
            feedLagMicroseconds: backend.feedLagMicroseconds, lastAppliedChange: backend.lastAppliedChange,
            uptimeMicroseconds: shared.uptimeMicroseconds, openConnections: UInt64(shared.openConnections),
            protocolVersion: version, features: processor.configuration.features,
            serverVersion: processor.configuration.serverVersion,
            feed: version >= WireProtocol.feedReportVersion ? backend.feed : nil)
    }

    private func runAdmin(_ operation: RequestProcessor.AdminOperation, header: FrameHeader, start: NIODeadline,
                          context: ChannelHandlerContext) {
        guard let admin else {
            answer(context: context, .error(WireError(.adminUnavailable, "no admin handler")), header: header,
                   start: start)
            return
        }
        inFlight += 1
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let version = version
        Task {
            let response: WireResponse
            do {
                switch operation {
                case .rebuild: response = .rebuilt(try await admin.rebuild())
                case .verify:
                    var report = try await admin.verify()
                    if version < WireProtocol.verifyPendingVersion { report.pendingCount = nil }
                    response = .verified(report)
                }
            } catch {
                response = .error(WireError(mapping: error))
            }
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.inFlight -= 1
                guard context.channel.isActive else { return }
                handler.answer(context: context, response, header: header, start: start)
                handler.flushOutput(context: context)
                handler.afterRequestCompleted(context: context)
            }
        }
    }

    private func afterRequestCompleted(context: ChannelHandlerContext) {
        if shutdownRequested && inFlight == 0 {
            closeWithError(context: context, WireError(.shuttingDown, "the server is shutting down"))
        } else {
            resumeReadingIfPossible(context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A framing error cannot be resynchronised: answer it, then close. Anything else (socket errors) just closes.
        if let wire = error as? WireError {
            closeWithError(context: context, wire)
        } else {
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if inFlight == 0 {
                closeWithError(context: context, WireError(.idleTimeout, "connection idle for too long"))
            }
        } else if event is ShutdownRequested {
            shutdownRequested = true
            if inFlight == 0 {
                closeWithError(context: context, WireError(.shuttingDown, "the server is shutting down"))
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        var processed = false
        while !closing, context.channel.isWritable, var body = queuedFrames.popFirst() {
            process(context: context, body: &body)
            processed = true
        }
        if processed { flushOutput(context: context) }
        resumeReadingIfPossible(context: context)
        context.fireChannelWritabilityChanged()
    }

    // MARK: Outbound: back-pressure

    /// Holds reads back while too many requests are in flight or the peer is not reading its answers, so a slow
    /// reader cannot make the server buffer without bound.
    func read(context: ChannelHandlerContext) {
        if closing {
            // Lingering: drain and discard until the client closes.
            context.read()
            return
        }
        if shutdownRequested { return }
        if inFlight >= processor.configuration.maximumInFlight || !context.channel.isWritable
            || !queuedFrames.isEmpty {
            readPending = true
        } else {
            context.read()
        }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        guard readPending, !closing, !shutdownRequested, queuedFrames.isEmpty,
              inFlight < processor.configuration.maximumInFlight, context.channel.isWritable else { return }
        readPending = false
        context.read()
    }

    // MARK: Writing

    private func write(context: ChannelHandlerContext, _ response: WireResponse, requestID: UInt32) {
        WireCodec.encode(response, requestID: requestID, into: &output)
        if output.readableBytes >= Self.outputFlushThreshold { flushOutput(context: context) }
    }

    /// Writes and flushes the buffered answers, then makes the buffer ready for the next burst.
    ///
    /// The flush can re-enter this handler (a write completing fires `channelWritabilityChanged`, which answers
    /// queued frames into `output`): the answers being written are sliced off first, so answers added meanwhile
    /// stay readable in `output` and go out with the next flush instead of being cleared.
    private func flushOutput(context: ChannelHandlerContext) {
        guard let chunk = output.readSlice(length: output.readableBytes), chunk.readableBytes > 0 else { return }
        context.writeAndFlush(wrapOutboundOut(chunk), promise: nil)
        guard output.readableBytes == 0 else { return }
        if output.capacity > Self.outputRetainedCapacity {
            output = context.channel.allocator.buffer(capacity: Self.outputInitialCapacity)
        } else {
            output.clear()
        }
    }

    /// Sends `error` as the connection's last frame and closes lingering (see ``LingeringClose``); requests
    /// that arrive meanwhile are discarded.
    private func closeWithError(context: ChannelHandlerContext, _ error: WireError, requestID: UInt32 = 0) {
        guard !closing else { return }
        closing = true
        queuedFrames.removeAll()
        flushOutput(context: context)
        LingeringClose.send(error, requestID: requestID, context: context)
        // Reading goes on while lingering, so the client's last requests are drained rather than left unread.
        context.read()
    }
}

/// Ends a connection with an error frame without losing the frame.
///
/// The error frame is followed by end-of-file (the write side is shut), and the socket stays open, discarding
/// whatever the client sends, until the client closes or ``timeout`` passes. Closing outright while the client's
/// requests are still arriving (its `HELLO` on a refused connection, pipelined requests at shutdown) makes the
/// kernel answer with a reset, and a reset can discard the error frame, and answers written before it, before
/// the client reads them: the client would see a bare connection loss instead of the answers and the reason.
enum LingeringClose {
    /// Longest a closing connection is kept open waiting for the client to close.
    static let timeout: TimeAmount = .seconds(2)

    static func send(_ error: WireError, requestID: UInt32, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        WireCodec.encode(.error(error), requestID: requestID, into: &buffer)
        let channel = context.channel
        context.writeAndFlush(NIOAny(buffer)).whenComplete { result in
            guard case .success = result else {
                channel.close(promise: nil)
                return
            }
            let shutOutput = channel.eventLoop.makePromise(of: Void.self)
            shutOutput.futureResult.whenFailure { _ in channel.close(promise: nil) }
            channel.close(mode: .output, promise: shutOutput)
            let linger = channel.eventLoop.scheduleTask(in: Self.timeout) { channel.close(promise: nil) }
            channel.closeFuture.whenComplete { _ in linger.cancel() }
        }
    }
}

/// Answers `too_many_connections` and closes lingering (see ``LingeringClose``); installed instead of a
/// ``ConnectionHandler`` when full.
final class RejectConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        LingeringClose.send(WireError(.tooManyConnections, "the server is at its connection limit"), requestID: 0,
                            context: context)
    }

    /// Discards what the refused client sends (its `HELLO`, typically).
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

