import ExploreQuery
import CoreMetrics
import ExploreWire
import Foundation
public import NIOCore
import NIOPosix

/// Figures and open connections shared by every connection of one server.
final class ServerSharedState: @unchecked Sendable {
    // Safe: every mutable field is read and written only while holding `lock`.
    private let lock = NSLock()
    let metrics: RequestMetrics
    private var channels: [ObjectIdentifier: any Channel] = [:]
    private let started = NIODeadline.now()

    init(metrics: RequestMetrics) {
        self.metrics = metrics
    }

    var uptimeMicroseconds: UInt64 {
        UInt64(max((NIODeadline.now() - started).nanoseconds / 1_000, 0))
    }

    var openConnections: Int { lock.withLock { channels.count } }

    /// Registers a connection; `false` when the server is at `limit`.
    func admit(_ channel: any Channel, limit: Int) -> Bool {
        let admitted = lock.withLock {
            guard channels.count < limit else { return false }
            channels[ObjectIdentifier(channel)] = channel
            return true
        }
        if admitted { metrics.openConnections.increment() } else { metrics.rejectedConnections.increment() }
        return admitted
    }

    func remove(_ channel: any Channel) {
        let removed = lock.withLock { channels.removeValue(forKey: ObjectIdentifier(channel)) }
        if removed != nil { metrics.openConnections.decrement() }
    }

    func allChannels() -> [any Channel] { lock.withLock { Array(channels.values) } }

    private var shutdownTask: Task<Void, Never>?

    /// The one shutdown task: created by the first caller, awaited by every caller.
    func shutdownTask(_ make: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        lock.withLock {
            if let shutdownTask { return shutdownTask }
            let task = Task { await make() }
            shutdownTask = task
            return task
        }
    }
}

/// The explore protocol server: SwiftNIO, one event loop per core, many pipelined connections.
public final class ExploreServer: Sendable {
    /// The configuration the server runs with.
    public let configuration: ExploreServerConfiguration
    /// The bound port (useful after binding port 0).
    public let port: Int

    private let serverChannel: any Channel
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let shared: ServerSharedState

    private init(configuration: ExploreServerConfiguration, port: Int, serverChannel: any Channel,
                 group: any EventLoopGroup, ownsGroup: Bool, shared: ServerSharedState) {
        self.configuration = configuration
        self.port = port
        self.serverChannel = serverChannel
        self.group = group
        self.ownsGroup = ownsGroup
        self.shared = shared
    }

    /// Binds and starts serving.
    /// - Parameters:
    ///   - configuration: address, limits and feature flags.
    ///   - backend: the searchable data.
    ///   - admin: the handler for `REBUILD` / `VERIFY`; `nil` refuses them with `admin_unavailable`.
    ///   - group: event loops to use; by default a new group with one thread per core, shut down with the server.
    /// - Throws: the bind error.
    public static func start(configuration: ExploreServerConfiguration, backend: any SearchBackend,
                             admin: (any AdminHandler)? = nil,
                             group: (any EventLoopGroup)? = nil) async throws -> ExploreServer {
        let ownsGroup = group == nil
        let group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let shared = ServerSharedState(
            metrics: RequestMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory))
        let processor = RequestProcessor(configuration: configuration, backend: backend,
                                         hasAdminHandler: admin != nil)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 64 * 1024, high: 256 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard shared.admit(channel, limit: configuration.maximumConnections) else {
                        try channel.pipeline.syncOperations.addHandler(RejectConnectionHandler())
                        return
                    }
                    channel.closeFuture.whenComplete { _ in shared.remove(channel) }
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: configuration.idleTimeout),
                        ByteToMessageHandler(FrameDecoder(maximumFrameSize: configuration.maximumFrameSize)),
                        ConnectionHandler(processor: processor, shared: shared, admin: admin),
                    ])
                }
            }
        do {
            let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
            let port = channel.localAddress?.port ?? configuration.port
            return ExploreServer(configuration: configuration, port: port, serverChannel: channel, group: group,
                                 ownsGroup: ownsGroup, shared: shared)
        } catch {
            if ownsGroup { try? await group.shutdownGracefully() }
            throw error
        }
    }

    /// Number of open client connections.
    public var openConnections: Int { shared.openConnections }

    /// Stops accepting, lets requests in flight finish (up to the grace period), tells each client
    /// `shutting_down`, closes every connection and, if the server created its event loops, shuts them down.
    /// Safe to call more than once; every call returns when the shutdown is complete.
    public func shutdown() async {
        await shared.shutdownTask { [self] in await performShutdown() }.value
    }

    private func performShutdown() async {
        try? await serverChannel.close()
        let channels = shared.allChannels()
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ShutdownRequested())
        }
        let deadline = NIODeadline.now() + configuration.shutdownGracePeriod
        for channel in channels {
            let remaining = deadline - NIODeadline.now()
            let closed = channel.closeFuture
            let timeout = channel.eventLoop.scheduleTask(in: max(remaining, .zero)) {
                channel.close(promise: nil)
            }
            try? await closed.get()
            timeout.cancel()
        }
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    /// Completes when the listening socket closes.
    public func waitUntilClosed() async {
        try? await serverChannel.closeFuture.get()
    }
}
