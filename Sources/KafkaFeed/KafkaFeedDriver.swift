import ChangeEvents
public import ExploreQuery
import Foundation
import Kafka
public import Logging
public import Postgres
public import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps the projection table and the cache current from a Kafka topic of change events.
///
/// On start (and after any PostgreSQL failure) it builds the projection if it never was, then reads the
/// projection, the checkpoint and the stored offsets in one snapshot, loads the cache from them and assigns
/// every partition of the topic manually (no group rebalance) from the stored offsets. Each batch recomputes the
/// affected listings from the base tables (the source of truth, so duplicates and reordering are harmless) and
/// stores the partitions' next offsets in the same transaction; the cache is updated after COMMIT, then the
/// offsets are committed to the broker without waiting, for lag tooling only.
///
/// Kafka failures (broker down, topic missing) are retried with backoff while the cache keeps serving:
/// ``FeedStatus/isConnected`` is false and ``FeedStatus/lastError`` says why. Poison events are counted in
/// ``FeedStatus/rejectedEvents``, logged with their position, dead-lettered when configured, and skipped.
///
/// Full rebuilds (``RebuildableFeed``: admin `REBUILD`, `explore-projector rebuild` asking through
/// `explore.projection_state`, a projection-version upgrade on the first pass) run beside the feed; the feed
/// records the listings each batch recomputed and performs the swap and the cache install between two committed
/// batches, with no batch in flight.
///
/// Every blocking call (libpq, librdkafka) runs on threads the driver owns: its own for polling and batching,
/// a serial queue for the batch transactions (see ``Follower``), and the outbox pruner's.
public final class KafkaFeedDriver: RebuildableFeed, @unchecked Sendable {
    /// How the driver connects and batches.
    public struct Configuration: Sendable {
        /// The database.
        public var postgres: PostgresConfiguration
        /// The topic, brokers, group and dead-letter topic.
        public var kafka: KafkaFeedConfiguration
        /// Batch window and size (the outbox feed's semantics).
        public var batching: ChangeBatcher.Configuration
        /// Delay before reconnecting after a failure.
        public var backoff: ReconnectBackoff
        /// Called inside each batch transaction just before COMMIT; throwing rolls the batch back. For tests.
        public var beforeCommit: (@Sendable () throws -> Void)?
        /// How full rebuilds run (chunk size, lock timeout, version upgrade on start); `nil`: the defaults.
        public var rebuild: RebuildCoordinator.Configuration?
        /// How often, at most, the feed looks between batches for rebuild work while it has no step waiting
        /// (the coordinator reads `explore.projection_state` less often still).
        public var rebuildCheckInterval: Duration = .milliseconds(100)

        /// Creates a configuration.
        public init(
            postgres: PostgresConfiguration, kafka: KafkaFeedConfiguration,
            batching: ChangeBatcher.Configuration = .init(), backoff: ReconnectBackoff = ReconnectBackoff(),
            beforeCommit: (@Sendable () throws -> Void)? = nil
        ) {
            self.postgres = postgres
            self.kafka = kafka
            self.batching = batching
            self.backoff = backoff
            self.beforeCommit = beforeCommit
        }
    }

    /// The cache this driver keeps current.
    public let index: ExploreIndex
    /// Full rebuilds, run between this driver's batches.
    public let rebuildCoordinator: RebuildCoordinator
    private let configuration: Configuration
    private let logger: Logger
    private let router = KafkaEventRouter()
    private let lock = NSLock()
    private var stopRequested = false
    private var currentStatus = FeedStatus()
    /// When the last loss to retention was detected; a rebuild started after it heals every loss.
    private var lastLossAt: ContinuousClock.Instant?
    private var thread: Thread?
    private var finished: DispatchSemaphore?
    private var started = false

    /// Creates a driver that will update `index`.
    public init(configuration: Configuration, index: ExploreIndex, logger: Logger = Logger(label: "kafka-feed")) {
        self.configuration = configuration
        self.index = index
        self.logger = logger
        rebuildCoordinator = RebuildCoordinator(
            configuration: configuration.rebuild ?? .init(postgres: configuration.postgres), index: index,
            logger: logger)
    }

    /// A snapshot of the counters.
    public var status: FeedStatus {
        forgetLossesHealed(since: rebuildCoordinator.lastSuccessfulStart)
        var status = lock.withLock { currentStatus }
        status.rebuild = rebuildCoordinator.progress
        return status
    }

    /// Starts the loop on its own thread; does nothing when it is already running or has been stopped.
    public func start() {
        let semaphore = DispatchSemaphore(value: 0)
        let alreadyStarted = lock.withLock { () -> Bool in
            defer { started = true }
            if !started { finished = semaphore }
            return started
        }
        guard !alreadyStarted else { return }
        let thread = Thread { [self] in
            run()
            semaphore.signal()
        }
        thread.name = "explore.kafka-feed"
        thread.stackSize = 4 << 20
        lock.withLock { self.thread = thread }
        thread.start()
    }

    /// Asks the loop to stop after the batch in flight and waits for it.
    public func stop() {
        let semaphore: DispatchSemaphore? = lock.withLock {
            stopRequested = true
            defer { finished = nil }
            return finished
        }
        semaphore?.wait()
    }

    private var shouldStop: Bool { lock.withLock { stopRequested } }

    private func update(_ body: (inout FeedStatus) -> Void) {
        lock.withLock { body(&currentStatus) }
    }

    // MARK: Sessions

    private func run() {
        var backoff = configuration.backoff
        while !shouldStop {
            do {
                try session(backoff: &backoff)
            } catch {
                update {
                    $0.failures += 1
                    $0.isConnected = false
                    $0.lastError = "\(error)"
                }
                logger.warning("Kafka feed failed; restarting from the stored offsets", metadata: [
                    "error": "\(error)",
                ])
                sleepUnlessStopped(backoff.nextDelay())
            }
        }
        rebuildCoordinator.feedStopped()
    }

    /// One PostgreSQL session: build, bootstrap, then follow the topic (reconnecting to Kafka as often as
    /// needed) until stopped or a PostgreSQL failure, after which the next session reloads everything.
    private func session(backoff: inout ReconnectBackoff) throws {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(configuration.postgres)
        } catch {
            throw ProjectorError(code: .database, message: "connecting failed: \(error.description)",
                                 underlying: error)
        }
        defer { connection.close() }
        // The same lock as the outbox feed: one feed at a time writes the projection.
        let locked = try connection.query(
            "SELECT pg_try_advisory_lock(hashtext('explore.projector'), hashtext($1))",
            [ProjectionDefinition.feedName])
        guard locked.first?[0] == "t" else {
            throw ProjectorError(code: .feedLocked, message: "another projector follows this feed")
        }
        try ProjectionStore.buildIfNeeded(on: connection)
        if (try? OutboxCapture.triggers(on: connection))?.contains(where: \.isEnabled) == true {
            logger.notice("""
                outbox capture is on: writers also append every change to explore.change_outbox, which this feed \
                only prunes (explore-projector outbox-capture off spares them that)
                """)
        }
        let kafka = configuration.kafka
        let bootstrap = try KafkaOffsetStore.bootstrap(topic: kafka.topic, on: connection)
        index.replace(with: bootstrap.store)
        update {
            $0.isBootstrapped = true
            $0.appliedChanges = bootstrap.appliedChanges
            $0.committedChanges = bootstrap.appliedChanges
        }
        logger.info("cache bootstrapped", metadata: [
            "rows": "\(bootstrap.store.count)", "stored_partitions": "\(bootstrap.offsets.count)",
        ])
        backoff.reset()
        rebuildCoordinator.sessionStarted(appliedChanges: bootstrap.appliedChanges)

        let deadLetters = try kafka.deadLetterTopic.map { _ throws(KafkaError) in
            try KafkaProducer(configuration: kafka.producerProperties())
        }
        defer { if let deadLetters { try? deadLetters.flushSynchronously(timeout: kafka.deadLetterFlushTimeout) } }
        // Pruning runs beside the feed, only while this session holds the feed lock.
        let pruner = kafka.outboxPruneInterval.map {
            OutboxPruner(postgres: configuration.postgres, interval: $0, logger: logger)
        }
        pruner?.start()
        defer { pruner?.stop() }
        let follower = Follower(
            driver: self, connection: connection, deadLetters: deadLetters, committed: bootstrap.offsets)
        var kafkaBackoff = configuration.backoff
        while !shouldStop {
            do {
                try follower.follow()
                kafkaBackoff.reset()
            } catch let error as KafkaError {
                update {
                    $0.isConnected = false
                    $0.lastError = "Kafka: \(error)"
                    $0.failures += 1
                }
                logger.warning("Kafka unavailable; retrying", metadata: ["error": "\(error)"])
                sleepUnlessStopped(kafkaBackoff.nextDelay())
                // No batch is in flight while Kafka is away: a rebuild's swap or cache install need not wait.
                try follower.runRebuildSteps()
            }
        }
    }

    /// Follows the topic within one PostgreSQL session; a Kafka failure ends ``follow()`` with a `KafkaError`
    /// (the next call reconnects from the stored offsets), a PostgreSQL failure with a `ProjectorError`.
    ///
    /// Two threads share the work: the driver's thread polls, routes and batches; the applier's thread runs the
    /// batch transaction and then updates the cache, so decoding the next batch overlaps writing the previous
    /// one. While a batch is being applied the next one keeps growing (up to the batch size), so batches grow
    /// with the database's latency instead of queueing up.
    private struct Follower {
        let driver: KafkaFeedDriver
        let applier: BatchApplier
        let deadLetters: KafkaProducer?
        /// Next offset per partition, as stored in PostgreSQL by the last committed batch.
        let committed: CommittedOffsets
        let clock = ContinuousClock()
        let origin: ContinuousClock.Instant

        init(driver: KafkaFeedDriver, connection: PostgresConnection, deadLetters: KafkaProducer?,
             committed: [Int32: Int64]) {
            self.driver = driver
            self.applier = BatchApplier(connection: connection)
            self.deadLetters = deadLetters
            self.committed = CommittedOffsets(committed)
            origin = clock.now
        }

        private var kafka: KafkaFeedConfiguration { driver.configuration.kafka }

        private func now() -> UInt64 {
            let elapsed = origin.duration(to: clock.now).components
            return UInt64(elapsed.seconds) * 1_000_000_000 + UInt64(elapsed.attoseconds / 1_000_000_000)
        }

        func follow() throws {
            let consumer = try KafkaConsumer(configuration: kafka.consumerProperties())
            defer { try? consumer.closeSynchronously() }
            let errors = Task { [driver] in
                for await error in consumer.errors { driver.kafkaReported(error) }
            }
            defer { errors.cancel() }
            // Whatever ends this call, the batch in flight finishes first, so `committed` is exact.
            defer { applier.drain() }
            var partitions = try consumer.partitionCount(topic: kafka.topic, timeout: .seconds(5))
            try assign(consumer, partitions: partitions)
            driver.update {
                $0.isConnected = true
                if $0.lostEvents == 0 { $0.lastError = nil }
            }
            driver.logger.info("following Kafka", metadata: [
                "topic": "\(kafka.topic)", "partitions": "\(partitions)",
            ])

            // The next offset each partition should deliver; a larger one means the topic's retention deleted
            // events before they were applied (librdkafka then resets to the oldest offset still kept).
            var expected = committed.offsets
            var batch = KafkaFeedBatch(configuration: driver.configuration.batching)
            let maximumKeys = driver.configuration.batching.maximumKeys
            var lastProbe = clock.now
            var lastRebuildCheck = clock.now.advanced(by: .seconds(-3600))
            while !driver.shouldStop {
                if let failure = applier.failure { throw failure }
                // Every batch's work starts with the rebuild's turn (see `submit`); with no batch to submit, a
                // step waiting (swap, cache install) or the periodic look at the state table gets a turn of its
                // own on the idle applier. The feed's thread never waits for either.
                let rebuildWaits = driver.rebuildCoordinator.wantsFeedSoon
                if applier.isIdle && (rebuildWaits || lastRebuildCheck.duration(to: clock.now)
                    >= driver.configuration.rebuildCheckInterval)
                {
                    lastRebuildCheck = clock.now
                    let coordinator = driver.rebuildCoordinator
                    applier.submit { connection in coordinator.betweenBatches(connection: connection) }
                }
                var wait = Duration.milliseconds(rebuildWaits ? 5 : 100)
                switch batch.tick(now: now()) {
                case .flushNow:
                    // Due: hand it over when the applier is free; meanwhile keep filling it up to the batch size.
                    if applier.isIdle || batch.pendingKeys >= maximumKeys {
                        submit(&batch, consumer: consumer)
                        continue
                    }
                    wait = .milliseconds(1)
                case .flushAt(let deadline):
                    let current = now()
                    wait = min(wait, .nanoseconds(Int64(clamping: deadline > current ? deadline - current : 0)))
                case .idle:
                    break
                }
                if let message = try consumer.poll(timeout: wait) {
                    if let next = expected[message.partition], message.offset > next {
                        lost(message, from: next)
                    }
                    expected[message.partition] = message.offset + 1
                    let routed = driver.router.route(message)
                    if case .rejected(let rejection) = routed { reject(message, rejection) }
                    _ = batch.add(message, routed: routed, now: now())
                }
                if lastProbe.duration(to: clock.now) >= kafka.metadataInterval {
                    lastProbe = clock.now
                    if let count = probe(consumer), count != partitions {
                        // New partitions: apply what is pending, then assign all of them from the stored offsets.
                        submit(&batch, consumer: consumer)
                        applier.drain()
                        if let failure = applier.failure { throw failure }
                        driver.logger.info("topic partitions changed", metadata: [
                            "from": "\(partitions)", "to": "\(count)",
                        ])
                        partitions = count
                        expected = committed.offsets
                        try assign(consumer, partitions: partitions)
                    }
                }
            }
            // Graceful stop: the batch in flight is finished, not dropped.
            submit(&batch, consumer: consumer)
            applier.drain()
            if let failure = applier.failure { throw failure }
        }

        /// Lets the rebuild coordinator run between two committed batches and waits for it: its step (swap,
        /// cache install) or its look at `explore.projection_state`, on the applier's connection after the batch
        /// in flight; for the feed's thread while it has no batches to hand over (Kafka unavailable).
        func runRebuildSteps() throws {
            applier.drain()
            if let failure = applier.failure { throw failure }
            let coordinator = driver.rebuildCoordinator
            applier.perform { connection in coordinator.betweenBatches(connection: connection) }
            if let failure = applier.failure { throw failure }
        }

        private func assign(_ consumer: KafkaConsumer, partitions: Int) throws(KafkaError) {
            let start: KafkaOffset = kafka.startPosition == .beginning ? .beginning : .end
            let stored = committed.offsets
            try consumer.assign((0..<Int32(clamping: partitions)).map { partition in
                KafkaTopicPartitionOffset(
                    topic: kafka.topic, partition: partition, offset: stored[partition].map(KafkaOffset.init) ?? start)
            })
        }

        /// Re-reads the partition count; updates the connection state and the lag in events.
        private func probe(_ consumer: KafkaConsumer) -> Int? {
            do {
                let started = ContinuousClock.now
                let count = try consumer.partitionCount(topic: kafka.topic, timeout: .seconds(2))
                let took = started.duration(to: .now)
                if took > .milliseconds(250) {
                    driver.logger.notice("slow metadata request", metadata: ["duration": "\(took)"])
                }
                // Events behind the stored offsets, from the watermarks of the last fetches; unknown until
                // every partition has been fetched from.
                let stored = committed.offsets
                var lag: Int64? = 0
                for partition in 0..<Int32(clamping: count) {
                    guard let marks = consumer.cachedWatermarks(topic: kafka.topic, partition: partition) else {
                        lag = nil
                        break
                    }
                    lag = lag.map { $0 + max(0, marks.high - (stored[partition] ?? marks.low)) }
                }
                driver.update {
                    $0.isConnected = true
                    // A loss stays reported until the driver is replaced (a rebuild); an outage message does not.
                    if $0.lostEvents == 0 { $0.lastError = nil }
                    $0.pendingChanges = lag
                    // Caught up: the cache trails the topic by nothing.
                    if lag == 0 { $0.lagMilliseconds = 0 }
                }
                return count
            } catch {
                driver.update {
                    $0.isConnected = false
                    $0.lastError = "Kafka: \(error)"
                }
                return nil
            }
        }

        /// Hands the batch to the applier (waiting while another is in flight): one transaction for the rows and
        /// the offsets, then the cache, then the broker.
        private func submit(_ batch: inout KafkaFeedBatch, consumer: KafkaConsumer) {
            let contents = batch.take()
            guard !contents.isEmpty else { return }
            let (driver, deadLetters, committed, kafka) = (driver, deadLetters, committed, kafka)
            applier.submit { connection in
                // Between two committed batches, on the applier's thread: the rebuild's swap and cache install
                // cannot overlap a batch, and the cache changes stay in order. Cheap when nothing is pending.
                driver.rebuildCoordinator.betweenBatches(connection: connection)
                if let deadLetters, deadLetters.outstandingCount > 0 {
                    // Dead letters reach their topic before the offsets that skip their events are stored.
                    do {
                        try deadLetters.flushSynchronously(timeout: kafka.deadLetterFlushTimeout)
                    } catch {
                        driver.logger.error("dead letters not delivered in time; committing anyway", metadata: [
                            "error": "\(error)", "outstanding": "\(deadLetters.outstandingCount)",
                        ])
                    }
                }
                let started = ContinuousClock.now
                let applied = try KafkaOffsetStore.apply(
                    contents, on: connection, beforeCommit: { try driver.configuration.beforeCommit?() })
                let took = started.duration(to: .now)
                if took > .milliseconds(250) {
                    driver.logger.notice("slow batch transaction", metadata: [
                        "milliseconds": "\(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000)",
                        "events": "\(contents.events)", "recomputed": "\(applied.recomputedListings)",
                    ])
                }
                committed.record(contents.nextOffsets.filter { $0.key.topic == kafka.topic })
                let cacheStarted = ContinuousClock.now
                driver.index.apply(applied.changes)
                let cacheTook = cacheStarted.duration(to: .now)
                driver.rebuildCoordinator.batchApplied(
                    listingIDs: applied.listingIDs, changes: applied.changes, appliedChanges: applied.appliedChanges)
                let lag = contents.newestTimestampMilliseconds.map { newest in
                    max(0, Date().timeIntervalSince1970 * 1000 - Double(newest))
                }
                driver.update {
                    $0.appliedChanges = applied.appliedChanges
                    $0.committedChanges = applied.appliedChanges
                    $0.recordBatch(database: took, cache: cacheTook)
                    if let lag { $0.lagMilliseconds = lag }
                }
                do {
                    try consumer.commitWithoutWaiting(contents.nextOffsets.map { partition, offset in
                        KafkaTopicPartitionOffset(
                            topic: partition.topic, partition: partition.partition, offset: KafkaOffset(offset))
                    })
                } catch {
                    driver.logger.debug("broker offset commit not queued", metadata: ["error": "\(error)"])
                }
            }
        }

        /// Reports events deleted by the topic's retention before the feed applied them. Nothing can bring them
        /// back: the operator must rebuild the projection.
        private func lost(_ message: KafkaMessage, from next: Int64) {
            let count = message.offset - next
            let error = "Kafka: \(count) event(s) of \(message.topic) partition \(message.partition) (offsets "
                + "\(next)..<\(message.offset)) were deleted by the topic's retention before they were applied; "
                + "rebuild the projection"
            driver.update {
                $0.lostEvents += count
                $0.lastError = error
            }
            driver.lock.withLock { driver.lastLossAt = ContinuousClock.now }
            driver.logger.error("\(error)")
        }

        /// Counts, logs and dead-letters a poison event; the batch still moves past it.
        private func reject(_ message: KafkaMessage, _ rejection: KafkaEventRejection) {
            driver.update { $0.rejectedEvents += 1 }
            driver.logger.warning("rejected a Kafka event", metadata: [
                "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
                "code": "\(rejection.code)", "reason": "\(rejection.reason)",
            ])
            guard let deadLetters, let topic = kafka.deadLetterTopic else { return }
            let record = KafkaProducerRecord(
                topic: topic, key: message.key, value: message.value, headers: [
                    KafkaHeader(name: "explore.rejection.code", text: rejection.code.name),
                    KafkaHeader(name: "explore.rejection.reason", text: rejection.reason),
                    KafkaHeader(name: "explore.original.topic", text: message.topic),
                    KafkaHeader(name: "explore.original.partition", text: String(message.partition)),
                    KafkaHeader(name: "explore.original.offset", text: String(message.offset)),
                ])
            do {
                try deadLetters.enqueue(record)
            } catch {
                // A full queue: wait for room once, then give up on this dead letter (it is logged above).
                do {
                    try deadLetters.flushSynchronously(timeout: kafka.deadLetterFlushTimeout)
                    try deadLetters.enqueue(record)
                } catch {
                    driver.logger.error("dead letter not produced", metadata: [
                        "offset": "\(message.offset)", "partition": "\(message.partition)", "error": "\(error)",
                    ])
                }
            }
        }
    }

    /// Clears the reported losses when a rebuild that started after the last of them has finished: the rebuilt
    /// table holds what the lost events changed.
    private func forgetLossesHealed(since rebuildStart: ContinuousClock.Instant?) {
        guard let rebuildStart else { return }
        lock.withLock {
            guard let lossAt = lastLossAt, lossAt < rebuildStart else { return }
            lastLossAt = nil
            currentStatus.lostEvents = 0
            if currentStatus.lastError?.contains("retention") == true { currentStatus.lastError = nil }
        }
    }

    /// An error librdkafka reported on the side (broker down, transport failure).
    private func kafkaReported(_ error: KafkaError) {
        update {
            $0.lastError = "Kafka: \(error)"
            if error.code == .allBrokersDown || error.isFatal { $0.isConnected = false }
        }
        logger.debug("Kafka reported an error", metadata: ["error": "\(error)"])
    }

    private func sleepUnlessStopped(_ duration: Duration) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        while !shouldStop && clock.now < deadline {
            usleep(10_000)
        }
    }
}
