import Dispatch
public import ExploreQuery
public import ExploreServer
import ExploreWire
public import KafkaFeed
public import Logging
public import Postgres
public import Projector

/// The Explore service: the projector keeping the projection table and the in-memory cache current, and the
/// protocol server answering searches from that cache, started and stopped together.
///
/// Start order: check the schema, build the projection if it has never been built, let the projector bootstrap
/// the cache from the projection table, then bind the server, so the first search already sees every listing.
/// Stop order: the projector finishes the batch in flight, then the server drains its connections.
public final class ExploreService: Sendable {
    /// What the service runs with.
    public struct Configuration: Sendable {
        /// The database holding the base tables and the projection.
        public var postgres: PostgresConfiguration
        /// Batch window and size of the projector.
        public var batching: ChangeBatcher.Configuration
        /// How often the projector looks at the outbox without a notification.
        public var pollInterval: Duration
        /// Connections the outbox feed applies a large batch on at once (see
        /// ``ProjectorDriver/Configuration/applyConnections``); `nil`: the projector's default.
        public var applyConnections: Int?
        /// Address, limits, feature flags and admin token of the protocol server.
        public var server: ExploreServerConfiguration
        /// Failed projector sessions tolerated before start gives up on bootstrapping the cache.
        public var bootstrapAttempts: Int
        /// Which change feed keeps the projection current: the outbox (default) or a Kafka topic.
        public var feed: Feed = .outbox
        /// How full rebuilds run under either feed (chunk size, catch-up and swap bounds).
        public var rebuild: RebuildStateMachine.Configuration = .init()

        /// The change feed the projector follows.
        public enum Feed: Sendable {
            /// `explore.change_outbox`, filled by the base-table triggers (LISTEN/NOTIFY plus polling).
            case outbox
            /// A Kafka topic of Debezium (or minimal) change events.
            case kafka(KafkaFeedConfiguration)
        }

        /// Creates a configuration; the server defaults to 127.0.0.1:7700 without admin operations.
        public init(postgres: PostgresConfiguration, batching: ChangeBatcher.Configuration = .init(),
                    pollInterval: Duration = .milliseconds(500),
                    server: ExploreServerConfiguration = ExploreServerConfiguration(),
                    bootstrapAttempts: Int = 3) {
            self.postgres = postgres
            self.batching = batching
            self.pollInterval = pollInterval
            self.server = server
            self.bootstrapAttempts = bootstrapAttempts
        }
    }

    /// The cache the server answers from.
    public let index: ExploreIndex
    /// The protocol server.
    public let server: ExploreServer
    private let projector: ProjectorHandle
    private let logger: Logger
    /// Set by the first ``shutdown()``: signals and the caller's own stop may each call it.
    private let stopRequested = StopFlag()

    private init(index: ExploreIndex, server: ExploreServer, projector: ProjectorHandle, logger: Logger) {
        self.index = index
        self.server = server
        self.projector = projector
        self.logger = logger
    }

    /// The port the server is bound to (useful after binding port 0).
    public var port: Int { server.port }

    /// The projector's counters (bootstrapped, applied changes, batches, failures).
    public var projectorStatus: FeedStatus { projector.status }

    /// Starts the projector and, once the cache is bootstrapped, the server.
    /// - Throws: ``ExploreServiceError`` naming the cause (database unreachable, schema not migrated, cache not
    ///   bootstrapped, address in use).
    public static func start(configuration: Configuration, logger: Logger = Logger(label: "explore.service"))
        async throws(ExploreServiceError) -> ExploreService
    {
        let postgres = configuration.postgres
        let built = try await offCooperativePool { () throws(ExploreServiceError) -> Bool in
            try Self.prepareProjection(postgres)
        }
        if built { logger.info("built the projection table from the defining query") }

        let index = ExploreIndex()
        let projector = try makeProjector(configuration, index: index, logger: logger)
        let attempts = configuration.bootstrapAttempts
        do {
            try await offCooperativePool { () throws(ExploreServiceError) in
                try projector.startAndAwaitBootstrap(attempts: attempts)
            }
        } catch {
            await offCooperativePool { projector.stop() }
            throw error
        }
        logger.info("cache bootstrapped", metadata: [
            "listings": "\(index.count)", "applied_changes": "\(projector.status.appliedChanges)",
        ])

        let server: ExploreServer
        do {
            server = try await ExploreServer.start(
                configuration: configuration.server,
                backend: ProjectedBackend(index: index, projector: projector),
                admin: configuration.server.adminToken == nil
                    ? nil : ProjectionAdmin(index: index, projector: projector, postgres: postgres, logger: logger))
        } catch {
            await offCooperativePool { projector.stop() }
            throw ExploreServiceError(.listenFailed, "cannot listen on \(configuration.server.host):"
                + "\(configuration.server.port): \(error)")
        }
        logger.info("serving", metadata: [
            "address": "\(configuration.server.host):\(server.port)",
            "admin": "\(configuration.server.adminToken == nil ? "off" : "on")",
        ])
        return ExploreService(index: index, server: server, projector: projector, logger: logger)
    }

    /// Stops the projector after the batch in flight, then shuts the server down gracefully. Safe to call more
    /// than once.
    public func shutdown() async {
        let projector = projector
        await offCooperativePool { projector.stop() }
        await server.shutdown()
        if stopRequested.setOnce() { logger.info("stopped") }
    }

    /// Completes when the server's listening socket closes (after ``shutdown()``).
    public func waitUntilClosed() async {
        await server.waitUntilClosed()
    }

    /// The handle over the configured feed's driver.
    private static func makeProjector(_ configuration: Configuration, index: ExploreIndex, logger: Logger)
        throws(ExploreServiceError) -> ProjectorHandle
    {
        switch configuration.feed {
        case .outbox:
            var driverConfiguration = ProjectorDriver.Configuration(
                postgres: configuration.postgres, batching: configuration.batching,
                pollInterval: configuration.pollInterval)
            if let applyConnections = configuration.applyConnections {
                driverConfiguration.applyConnections = applyConnections
            }
            driverConfiguration.rebuild = .init(postgres: configuration.postgres, machine: configuration.rebuild)
            return ProjectorHandle(
                driver: ProjectorDriver(configuration: driverConfiguration, index: index, logger: logger))
        case .kafka(let kafka):
            do {
                try kafka.validate()
            } catch {
                throw ExploreServiceError(.invalidConfiguration, error.message)
            }
            var driverConfiguration = KafkaFeedDriver.Configuration(
                postgres: configuration.postgres, kafka: kafka, batching: configuration.batching)
            driverConfiguration.rebuild = .init(postgres: configuration.postgres, machine: configuration.rebuild)
            return ProjectorHandle(
                driver: KafkaFeedDriver(configuration: driverConfiguration, index: index, logger: logger))
        }
    }

    /// Checks that the migrations created the projection's objects, then builds the projection if needed.
    private static func prepareProjection(_ postgres: PostgresConfiguration) throws(ExploreServiceError) -> Bool {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(postgres)
        } catch {
            throw ExploreServiceError(.databaseUnavailable, "cannot connect to PostgreSQL at \(postgres.host):"
                + "\(postgres.port)/\(postgres.database): \(error.message)")
        }
        defer { connection.close() }
        do {
            let present = try connection.query("""
                SELECT to_regclass('explore.listings_projection') IS NOT NULL
                   AND to_regclass('explore.checkpoint') IS NOT NULL
                   AND to_regclass('explore.change_outbox') IS NOT NULL
                   AND to_regclass('explore.kafka_offsets') IS NOT NULL
                """)
            guard present.first?[0] == "t" else {
                throw ExploreServiceError(.notMigrated, "the projection tables are missing in database "
                    + "\(postgres.database): run explore-projector migrate up")
            }
        } catch let error as ExploreServiceError {
            throw error
        } catch {
            throw ExploreServiceError(.databaseUnavailable, "checking the schema failed: \(error)")
        }
        do {
            return try ProjectionStore.buildIfNeeded(on: connection)
        } catch {
            throw ExploreServiceError(.projectionFailed, "\(error)")
        }
    }
}

/// Runs blocking work (libpq, joins, whole-table scans) on a dispatch thread, never on the cooperative pool.
func offCooperativePool<T: Sendable>(_ work: @escaping @Sendable () throws(ExploreServiceError) -> T)
    async throws(ExploreServiceError) -> T
{
    let result: Result<T, ExploreServiceError> = await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            do throws(ExploreServiceError) {
                continuation.resume(returning: .success(try work()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}

/// Runs blocking work that cannot fail on a dispatch thread.
func offCooperativePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: work()) }
    }
}

/// A flag that is set once; `setOnce()` tells the one caller that set it.
final class StopFlag: @unchecked Sendable {
    // Safe: `isSet` is only read and written inside `lock`.
    private let lock = ProjectorLockBox()
    private var isSet = false

    /// Sets the flag; `true` only for the call that set it.
    func setOnce() -> Bool {
        lock.withLock {
            defer { isSet = true }
            return !isSet
        }
    }
}
