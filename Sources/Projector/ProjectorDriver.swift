public import ExploreQuery
public import Logging
public import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs the projector: builds the projection if needed, bootstraps the cache, then follows the outbox and
/// applies batches to PostgreSQL and, after each commit, to the cache.
///
/// The loop runs on its own thread (every libpq call blocks) and only performs what ``OutboxFeedStateMachine``
/// and ``ChangeBatcher`` decide; each committed batch goes to the cache on a second thread (a ``SerialWorker``)
/// while the loop reads and commits the next one, and a large batch is split by listing and applied on several
/// connections at once (see ``Configuration/applyConnections``). A notification only wakes the loop; it also
/// polls every `pollInterval`, so a missed notification costs latency, not data. After any failure it reconnects with
/// backoff, re-reads the checkpoint and reloads the cache from the projection table (once the cache has every
/// batch handed to it), so a batch whose COMMIT outcome was unknown can never leave the cache behind or ahead of
/// the table.
public final class ProjectorDriver: RebuildableFeed, @unchecked Sendable {
    /// How the driver batches and polls.
    public struct Configuration: Sendable {
        /// The database.
        public var postgres: PostgresConfiguration
        /// Batch window and size.
        public var batching: ChangeBatcher.Configuration
        /// How often to look at the outbox without a notification.
        public var pollInterval: Duration
        /// Outbox entries per read.
        public var pageSize: Int
        /// Connections a large batch is applied on at once, each recomputing its share of the listings (1: one
        /// connection). Why: recomputing a batch is CPU work in one PostgreSQL backend, so a large change set
        /// waits for one core; with 2, 10,000 price changes at a million listings reached the table and the cache
        /// in about three quarters of the time on a 2-core machine.
        public var applyConnections = Self.defaultApplyConnections
        /// The default of ``applyConnections``.
        public static let defaultApplyConnections = 2
        /// Listings a batch must name before it is split across ``applyConnections``: the parts' extra round trips
        /// and the hand-over cost more than they save on small batches.
        public var splitMinimumKeys: Int = 2_000
        /// Delay before reconnecting after a failure.
        public var backoff: ReconnectBackoff
        /// Called inside each batch transaction just before COMMIT; throwing rolls the batch back. For tests.
        public var beforeCommit: (@Sendable () throws -> Void)?
        /// Shortest time between two measurements of the outbox lag (``OutboxLagTracker``).
        public var lagSampleInterval: Duration = .milliseconds(250)
        /// How full rebuilds run (chunk size, lock timeout, version upgrade on start); `nil`: the defaults.
        public var rebuild: RebuildCoordinator.Configuration?
        /// Called after each committed batch reached the cache, with the changes it made there, on the thread
        /// applying batches to the cache; for measurements (the bench's commit-to-visible freshness). Keep it
        /// cheap: the next batch's cache step waits.
        public var afterApply: (@Sendable (ListingChangeBatch) -> Void)?

        /// Creates a configuration with defaults suited to production.
        public init(
            postgres: PostgresConfiguration, batching: ChangeBatcher.Configuration = .init(),
            pollInterval: Duration = .milliseconds(500), pageSize: Int = 10_000,
            backoff: ReconnectBackoff = ReconnectBackoff(), beforeCommit: (@Sendable () throws -> Void)? = nil,
            afterApply: (@Sendable (ListingChangeBatch) -> Void)? = nil
        ) {
            self.postgres = postgres
            self.batching = batching
            self.pollInterval = pollInterval
            self.pageSize = pageSize
            self.backoff = backoff
            self.beforeCommit = beforeCommit
            self.afterApply = afterApply
        }
    }

    /// The cache this driver keeps current.
    public let index: ExploreIndex
    /// Full rebuilds, run between this driver's batches.
    public let rebuildCoordinator: RebuildCoordinator
    private let configuration: Configuration
    private let logger: Logger
    private let lock = ProjectorLock()
    private var stopRequested = false
    private var currentStatus = FeedStatus()
    private var thread: pthread_t?
    private var started = false

    /// Creates a driver that will update `index`.
    public init(configuration: Configuration, index: ExploreIndex, logger: Logger = Logger(label: "projector")) {
        self.configuration = configuration
        self.index = index
        self.logger = logger
        rebuildCoordinator = RebuildCoordinator(
            configuration: configuration.rebuild ?? .init(postgres: configuration.postgres), index: index,
            logger: logger)
    }

    /// A snapshot of the counters.
    public var status: FeedStatus {
        var status = lock.withLock { currentStatus }
        status.rebuild = rebuildCoordinator.progress
        return status
    }

    /// Starts the loop on its own thread; does nothing when it is already running or has been stopped.
    public func start() {
        let alreadyStarted = lock.withLock { () -> Bool in
            defer { started = true }
            return started
        }
        guard !alreadyStarted else { return }
        let unmanaged = Unmanaged.passRetained(self)
        var handle = pthread_t()
        let created = pthread_create(&handle, nil, { argument in
            let driver = Unmanaged<ProjectorDriver>.fromOpaque(argument!).takeRetainedValue()
            driver.run()
            return nil
        }, unmanaged.toOpaque())
        precondition(created == 0, "pthread_create failed with \(created)")
        lock.withLock { thread = handle }
    }

    /// Asks the loop to stop after the batch in flight and waits for it.
    public func stop() {
        let handle: pthread_t? = lock.withLock {
            stopRequested = true
            defer { thread = nil }
            return thread
        }
        if let handle { pthread_join(handle, nil) }
    }

    private var shouldStop: Bool { lock.withLock { stopRequested } }

    // MARK: Loop

    private func run() {
        var backoff = configuration.backoff
        while !shouldStop {
            do {
                try follow()
            } catch {
                lock.withLock {
                    currentStatus.failures += 1
                    currentStatus.isConnected = false
                    currentStatus.lastError = "\(error)"
                }
                logger.warning("projector failed; restarting from the checkpoint", metadata: [
                    "error": "\(error)",
                ])
                let delay = backoff.nextDelay()
                sleepUnlessStopped(delay)
                continue
            }
        }
        rebuildCoordinator.feedStopped()
    }

    /// One connected session: build, bootstrap, then follow the feed until stopped or a failure.
    private func follow() throws {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(configuration.postgres)
        } catch {
            throw ProjectorError.database("connecting failed", error)
        }
        defer { connection.close() }
        let locked = try connection.query(
            "SELECT pg_try_advisory_lock(hashtext('explore.projector'), hashtext($1))",
            [ProjectionDefinition.feedName])
        guard locked.first?[0] == "t" else {
            throw ProjectorError(code: .feedLocked, message: "another projector follows this feed")
        }
        try connection.listen(ProjectionDefinition.notificationChannel)
        try OutboxCapture.requireEnabled(on: connection)
        try ProjectionStore.buildIfNeeded(on: connection)
        let (store, checkpoint) = try ProjectionStore.loadCache(on: connection)
        index.replace(with: store)
        lock.withLock {
            currentStatus.isBootstrapped = true
            currentStatus.isConnected = true
            currentStatus.lastError = nil
            currentStatus.appliedChanges = checkpoint.appliedChanges
            currentStatus.committedChanges = checkpoint.appliedChanges
        }
        logger.info("cache bootstrapped", metadata: ["rows": "\(store.count)"])
        rebuildCoordinator.sessionStarted(appliedChanges: checkpoint.appliedChanges)

        var lagTracker = OutboxLagTracker(interval: configuration.lagSampleInterval)
        var feed = OutboxFeedStateMachine(checkpoint: checkpoint.position, pageSize: configuration.pageSize)
        var batcher = ChangeBatcher(configuration: configuration.batching)
        // Connections applying parts of split batches, each with a thread of its own; both end before `connection`.
        // One that cannot connect (the server's connection limit) only leaves its share to the others.
        let partners = (1..<max(1, configuration.applyConnections)).compactMap { _ -> ApplyPartner? in
            do {
                return ApplyPartner(connection: try PostgresConnection.connect(configuration.postgres))
            } catch {
                logger.warning("an apply connection failed to connect; large batches use fewer", metadata: [
                    "error": "\(error)",
                ])
                return nil
            }
        }
        defer { for partner in partners { partner.close() } }
        // Every batch handed over is in the cache before this session ends (a reload replaces the store).
        let applier = SerialWorker()
        defer { applier.finish() }
        let clock = ContinuousClock()
        let origin = clock.now
        func now() -> UInt64 {
            let elapsed = origin.duration(to: clock.now).components
            return UInt64(elapsed.seconds) * 1_000_000_000 + UInt64(elapsed.attoseconds / 1_000_000_000)
        }
        /// Hands a committed batch to the cache; it counts as applied once it is there, and the rebuild hears of
        /// batches in commit order, from the applier's thread. Called on this thread, or on a partner's right after
        /// its part of a split batch commits: so its cache step overlaps the rest of the batch, and it still comes
        /// first, as the last part waits for the others before it commits.
        let handOver: @Sendable (ProjectionStore.AppliedBatch, Duration) -> Void = { [self] applied, database in
            let total = lock.withLock {
                currentStatus.committedChanges += Int64(applied.consumedEntries)
                return currentStatus.committedChanges
            }
            applier.submit { [self] in
                let cacheStarted = ContinuousClock.now
                index.apply(applied.changes)
                let cache = ContinuousClock.now - cacheStarted
                configuration.afterApply?(applied.changes)
                lock.withLock {
                    currentStatus.appliedChanges = total
                    currentStatus.recordBatch(database: database, cache: cache)
                }
                rebuildCoordinator.batchApplied(
                    listingIDs: applied.listingIDs, changes: applied.changes, appliedChanges: total)
            }
        }
        /// Lets a rebuild take a pending step; the cache has every committed batch first.
        func betweenBatches() {
            rebuildCoordinator.betweenBatches(connection: connection, beforeStep: { applier.waitUntilIdle() })
        }
        /// Applies the open batch. A split batch's parts but the last run on the partners and only consume their
        /// entries; the last part, here, moves the feed position past them all, and only once every other part has
        /// committed (it waits before it locks the checkpoint row, which the others update too). A crash or failure
        /// anywhere thus leaves each part applied entirely or not at all and the position moved only past parts
        /// that are: the window is read again, and the committed parts' entries are gone from it.
        func flush() throws {
            let batch = batcher.takeBatch()
            guard !batch.isEmpty else { return }
            let parts = batch.split(into: partners.count + 1, minimumKeys: configuration.splitMinimumKeys)
            let helpers = partners.prefix(parts.count - 1)
            let started = ContinuousClock.now
            let committed = feed.committed
            let beforeCommit: @Sendable () throws -> Void = { try self.configuration.beforeCommit?() }
            for (partner, part) in zip(helpers, parts) {
                partner.start(part, at: committed, beforeCommit: beforeCommit,
                              committed: { handOver($0, ContinuousClock.now - started) })
            }
            do {
                let applied = try ProjectionStore.apply(
                    parts[parts.count - 1], from: committed, to: feed.read, on: connection,
                    beforeCheckpoint: { for partner in helpers { try partner.outcome() } },
                    beforeCommit: beforeCommit)
                feed.batchCommitted()
                handOver(applied, ContinuousClock.now - started)
            } catch {
                // A part still running must end before the session does (its connection closes then).
                for partner in helpers { try? partner.outcome() }
                feed.batchRolledBack()
                throw error
            }
        }

        while !shouldStop {
            // A rebuild's swap and cache install run here, between two batches.
            betweenBatches()
            // Drain what is committed now; pages of a large window follow each other at once.
            var more = true
            while more && !shouldStop {
                switch feed.fetched(try ProjectionStore.fetch(feed.nextFetch(limit: batcher.room), on: connection)) {
                case .idle:
                    more = false
                case .deliver(let entries, let hasMore):
                    more = hasMore
                    if batcher.add(entries, now: now()) == .flushNow {
                        try flush()
                        // A backlog that grows faster than it drains never ends this loop: a rebuild's swap and
                        // cache install must also run here, or they would wait for the writers to pause.
                        betweenBatches()
                    }
                }
            }
            if lagTracker.isDue(now: now()) {
                let lag = try lagTracker.measure(on: connection, now: now())
                lock.withLock {
                    currentStatus.pendingChanges = lag.pendingChanges
                    currentStatus.lagMilliseconds = lag.lagMilliseconds
                }
            }
            // Wait for the batch window, a notification or the poll interval, whichever ends first.
            var wait = configuration.pollInterval
            switch batcher.tick(now: now()) {
            case .flushNow:
                try flush()
                continue
            case .flushAt(let deadline):
                let current = now()
                wait = min(wait, .nanoseconds(Int64(clamping: deadline > current ? deadline - current : 0)))
            case .idle:
                break
            }
            if rebuildCoordinator.wantsFeedSoon { wait = min(wait, .milliseconds(5)) }
            _ = try connection.waitForNotifications(timeout: wait)
            if case .flushNow = batcher.tick(now: now()) { try flush() }
        }
        // Graceful stop: the batch in flight is finished, not dropped.
        try flush()
    }

    private func sleepUnlessStopped(_ duration: Duration) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        while !shouldStop && clock.now < deadline {
            usleep(10_000)
        }
    }
}

/// A connection applying parts of split batches (see ``ProjectorDriver/Configuration/applyConnections``) on a
/// thread of its own: ``start(_:at:beforeCommit:committed:)`` hands a part over, ``outcome()`` waits for it.
final class ApplyPartner: @unchecked Sendable {
    private let connection: PostgresConnection
    private let worker = SerialWorker()
    /// The last part's failure, if any; written on the worker's thread, read after `waitUntilIdle` (whose lock
    /// orders the two).
    private var failure: ProjectorError?

    /// Takes `connection` over and warms it up (``ProjectionStore/warmUp(on:)``) on the partner's thread; a first
    /// part waits for that, and a failure is left for it to meet.
    init(connection: PostgresConnection) {
        self.connection = connection
        worker.submit { [self] in _ = try? ProjectionStore.warmUp(on: self.connection) }
    }

    /// Applies `part` in a transaction of its own that consumes its entries and leaves the position at `position`,
    /// then calls `committed` with what it applied, on this partner's thread.
    func start(_ part: ChangeSet, at position: FeedPosition, beforeCommit: @escaping @Sendable () throws -> Void,
               committed: @escaping @Sendable (ProjectionStore.AppliedBatch) -> Void) {
        worker.waitUntilIdle()
        failure = nil
        worker.submit { [self] in
            do throws(ProjectorError) {
                committed(try ProjectionStore.apply(part, from: position, to: position, on: connection,
                                                    beforeCommit: beforeCommit))
            } catch {
                failure = error
            }
        }
    }

    /// Waits for the part handed over last; throws its error when it did not commit.
    func outcome() throws(ProjectorError) {
        worker.waitUntilIdle()
        if let failure { throw failure }
    }

    /// Ends the thread, then closes the connection.
    func close() {
        worker.finish()
        connection.close()
    }
}

/// A pthread mutex; `withLock` scopes every access.
final class ProjectorLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()

    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
