public import ExploreQuery
public import Logging
public import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A feed that can run a full rebuild between its batches: it owns a ``RebuildCoordinator`` and calls its hooks
/// ``RebuildCoordinator/sessionStarted(appliedChanges:)`` after each bootstrap,
/// ``RebuildCoordinator/batchApplied(listingIDs:changes:appliedChanges:)`` after each commit,
/// ``RebuildCoordinator/betweenBatches(connection:)`` between batches and ``RebuildCoordinator/feedStopped()`` at
/// the end. The outbox driver and the Kafka feed's driver adopt it.
public protocol RebuildableFeed: FeedDriver {
    /// The rebuild machinery the feed runs between its batches.
    var rebuildCoordinator: RebuildCoordinator { get }
}

extension RebuildableFeed {
    /// Runs a full rebuild of the projection table and the cache while the feed keeps going; blocks until it is
    /// done. Call off the cooperative pool.
    /// - Throws: `.rebuildInProgress` when one is already running; `.rebuildFailed` / `.database` otherwise.
    public func rebuild() throws(ProjectorError) -> RebuildSummary {
        try rebuildCoordinator.run(reason: "requested")
    }
}

/// What a finished rebuild did.
public struct RebuildSummary: Sendable, Hashable {
    /// Rows written to the new table by the fill.
    public var rows: Int64
    /// Seconds from start to the new cache being served.
    public var seconds: Double
    /// The definition version the new table was built with.
    public var version: Int
    /// Swap attempts (more than 1 when the lock timeout hit).
    public var swapAttempts: Int
}

/// Runs full rebuilds for a feed (see ``RebuildStateMachine`` for the steps and why nothing is lost).
///
/// Two threads meet here. The rebuild's own thread (the caller of ``run(reason:)``, or a background thread for a
/// version upgrade or a request from another process) performs the long steps on its own connection. The feed's
/// thread calls the hooks: it records the listings each batch recomputed and the cache changes after the swap,
/// and performs the steps that must not overlap a batch (swap, cache install) when it calls
/// ``betweenBatches(connection:)``.
public final class RebuildCoordinator: @unchecked Sendable {
    // Safe: every mutable field is read and written only while holding `monitor`.

    /// How rebuilds run.
    public struct Configuration: Sendable {
        /// The database (the rebuild thread opens its own connection).
        public var postgres: PostgresConfiguration
        /// The definition to build.
        public var query: ProjectionQuery
        /// Chunk size, catch-up and swap bounds.
        public var machine: RebuildStateMachine.Configuration
        /// How long the swap may wait for the live table's lock before rolling back and retrying.
        public var lockTimeout: Duration
        /// How often the feed looks for a rebuild requested by another process.
        public var requestPollInterval: Duration
        /// Rebuild in the background when the recorded version differs from ``query``'s.
        public var upgradesOnStart: Bool
        /// How long the rebuild waits for the feed to run a step between batches.
        public var feedStepTimeout: Duration

        /// Creates a configuration.
        public init(postgres: PostgresConfiguration, query: ProjectionQuery = .shipped,
                    machine: RebuildStateMachine.Configuration = .init(), lockTimeout: Duration = .milliseconds(200),
                    requestPollInterval: Duration = .seconds(1), upgradesOnStart: Bool = true,
                    feedStepTimeout: Duration = .seconds(300)) {
            self.postgres = postgres
            self.query = query
            self.machine = machine
            self.lockTimeout = lockTimeout
            self.requestPollInterval = requestPollInterval
            self.upgradesOnStart = upgradesOnStart
            self.feedStepTimeout = feedStepTimeout
        }
    }

    private enum FeedStep {
        case swap
        case install(ExploreStore, loadedApplied: Int64)
    }

    private enum FeedReply {
        case swapped
        case blocked
        case installed
        case failed(String)
    }

    private let configuration: Configuration
    private let index: ExploreIndex?
    private let logger: Logger
    private let feedName: String
    private let monitor = Monitor()
    private let clock = ContinuousClock()

    private var running = false
    private var recording = false
    private var touched = Set<Int64>()
    private var buffering = false
    private var buffered: [(before: Int64, after: Int64, changes: ListingChangeBatch)] = []
    private var bufferBase: Int64 = 0
    private var feedApplied: Int64 = 0
    private var pendingStep: FeedStep?
    private var stepTaken = false
    private var reply: FeedReply?
    private var restarted = false
    private var stopped = false
    private var sessionFresh = true
    private var lastCheck: ContinuousClock.Instant?
    private var phase: RebuildProgress.Phase?
    private var rowsDone: Int64 = 0
    private var rowsTotal: Int64?
    private var startedAt: ContinuousClock.Instant?
    private var lastFailure: String?
    private var lastSucceededStart: ContinuousClock.Instant?

    /// - Parameter index: the cache to reload after the swap; `nil` when there is none (a standalone rebuild).
    public init(configuration: Configuration, index: ExploreIndex?, feed: String = ProjectionDefinition.feedName,
                logger: Logger = Logger(label: "projector.rebuild")) {
        self.configuration = configuration
        self.index = index
        self.feedName = feed
        self.logger = logger
    }

    /// The rebuild in progress, for `FeedStatus.rebuild`; `nil` when none runs.
    public var progress: RebuildProgress? {
        monitor.withLock {
            guard let phase, let startedAt else { return nil }
            let elapsed = startedAt.duration(to: clock.now)
            return RebuildProgress(
                phase: phase, rowsDone: rowsDone, rowsTotal: rowsTotal,
                elapsedSeconds: elapsed.seconds)
        }
    }

    /// Whether a rebuild is running.
    public var isRunning: Bool { monitor.withLock { running } }

    /// The failure of the last rebuild, if it failed.
    public var lastError: String? { monitor.withLock { lastFailure } }

    /// When the last rebuild that finished successfully started: the new table and cache reflect every change
    /// committed before that instant, whatever the feed missed (a feed that lost events may stop reporting them).
    public var lastSuccessfulStart: ContinuousClock.Instant? { monitor.withLock { lastSucceededStart } }

    /// A step waits for the feed: it should come back between batches soon rather than after its poll interval.
    public var wantsFeedSoon: Bool { monitor.withLock { pendingStep != nil } }

    // MARK: Feed hooks

    /// The feed (re)started a session and loaded its cache from the table at a checkpoint counting
    /// `appliedChanges`.
    public func sessionStarted(appliedChanges: Int64) {
        monitor.withLock {
            feedApplied = appliedChanges
            sessionFresh = true
            if running {
                restarted = true
                buffering = false
                buffered = []
            }
            monitor.broadcast()
        }
    }

    /// The feed committed a batch that recomputed `listingIDs` and changed the cache by `changes`; the checkpoint
    /// now counts `appliedChanges`.
    public func batchApplied(listingIDs: [Int64], changes: ListingChangeBatch, appliedChanges: Int64) {
        monitor.withLock {
            if recording { touched.formUnion(listingIDs) }
            if buffering { buffered.append((feedApplied, appliedChanges, changes)) }
            feedApplied = appliedChanges
        }
    }

    /// The feed has stopped for good: a rebuild waiting for it fails.
    public func feedStopped() {
        monitor.withLock {
            stopped = true
            monitor.broadcast()
        }
    }

    /// Called by the feed between batches on its own connection: performs a pending swap or cache install, and
    /// now and then starts a background rebuild when the recorded version differs from the shipped one or another
    /// process asked for one. Never throws: failures go to the waiting rebuild, or are logged.
    ///
    /// - Parameter beforeStep: called before a swap or a cache install is performed. Both read what
    ///   ``batchApplied(listingIDs:changes:appliedChanges:)`` recorded, so a feed that reports batches from
    ///   another thread waits there until it has reported every batch it committed.
    public func betweenBatches(connection: PostgresConnection, beforeStep: () -> Void = {}) {
        let step: FeedStep? = monitor.withLock {
            guard let step = pendingStep else { return nil }
            pendingStep = nil
            stepTaken = true
            return step
        }
        if let step {
            beforeStep()
            let outcome = perform(step, on: connection)
            monitor.withLock {
                stepTaken = false
                reply = outcome
                monitor.broadcast()
            }
            return
        }
        checkForRequests(on: connection)
    }

    private func perform(_ step: FeedStep, on connection: PostgresConnection) -> FeedReply {
        switch step {
        case .swap:
            let ids = monitor.withLock { Array(touched) }
            do {
                switch try RebuildStore.swap(touched: ids, query: configuration.query,
                                             lockTimeout: configuration.lockTimeout, on: connection,
                                             projection: feedName) {
                case .lockTimeout:
                    return .blocked
                case .swapped:
                    monitor.withLock {
                        recording = false
                        touched = []
                        buffering = true
                        buffered = []
                        bufferBase = feedApplied
                    }
                    return .swapped
                }
            } catch {
                return .failed("\(error)")
            }
        case .install(let store, let loadedApplied):
            let replay: [ListingChangeBatch]? = monitor.withLock {
                defer {
                    buffering = false
                    buffered = []
                }
                // The loaded checkpoint must be the swap's or one a buffered batch ended at.
                guard loadedApplied == bufferBase || buffered.contains(where: { $0.after == loadedApplied }) else {
                    return nil
                }
                return buffered.filter { $0.after > loadedApplied }.map(\.changes)
            }
            guard let index else { return .installed }
            if let replay {
                index.replace(with: store, replaying: replay)
                return .installed
            }
            // Should not happen; load again here, where no batch can interleave.
            do {
                let (fresh, _) = try ProjectionStore.loadCache(on: connection, feed: feedName)
                index.replace(with: fresh)
                return .installed
            } catch {
                return .failed("\(error)")
            }
        }
    }

    private func checkForRequests(on connection: PostgresConnection) {
        let now = clock.now
        let (due, fresh) = monitor.withLock { () -> (Bool, Bool) in
            guard !running else { return (false, false) }
            let fresh = sessionFresh
            let due = fresh || lastCheck.map { $0.duration(to: now) >= configuration.requestPollInterval } ?? true
            if due { lastCheck = now }
            sessionFresh = false
            return (due, fresh)
        }
        guard due else { return }
        let state: RebuildStore.State?
        do {
            let present = try connection.query("SELECT to_regclass('explore.projection_state') IS NOT NULL")
            guard present.first?[0] == "t" else { return }
            state = try RebuildStore.state(on: connection, projection: feedName)
            if state == nil {
                // Built by this binary (the projection_state migration records older builds as version 1).
                try RebuildStore.recordVersionIfAbsent(configuration.query.version, on: connection,
                                                       projection: feedName)
            }
        } catch {
            logger.warning("reading the projection state failed", metadata: ["error": "\(error)"])
            return
        }
        guard let state else { return }
        if state.rebuildRequested {
            startInBackground(reason: "requested by another process")
        } else if fresh && configuration.upgradesOnStart && state.version != configuration.query.version {
            startInBackground(reason: "the table was built with projection version \(state.version), this "
                + "binary ships version \(configuration.query.version)")
        }
    }

    // MARK: Running a rebuild

    /// Starts a rebuild on a thread of its own, unless one is running; failures are logged and kept in
    /// ``lastError``.
    public func startInBackground(reason: String) {
        let thread = DetachedThread { [self] in
            do throws(ProjectorError) {
                _ = try run(reason: reason)
            } catch where error.code == .rebuildInProgress {
                return
            } catch {
                logger.error("rebuild failed", metadata: ["error": "\(error)"])
            }
        }
        thread.start()
    }

    /// Runs a rebuild on the calling thread; blocks until it is done. Call off the cooperative pool.
    public func run(reason: String) throws(ProjectorError) -> RebuildSummary {
        let claimed = monitor.withLock { () -> Bool in
            guard !running else { return false }
            running = true
            restarted = false
            lastFailure = nil
            // Record from before the first chunk's snapshot: every change the fill may miss is recomputed.
            recording = true
            touched = []
            phase = .building
            rowsDone = 0
            rowsTotal = nil
            startedAt = clock.now
            return true
        }
        guard claimed else {
            throw ProjectorError(code: .rebuildInProgress, message: "a rebuild of '\(feedName)' is already running")
        }
        defer {
            monitor.withLock {
                running = false
                recording = false
                touched = []
                buffering = false
                buffered = []
                pendingStep = nil
                reply = nil
                phase = nil
                startedAt = nil
            }
        }
        logger.info("rebuild started", metadata: ["reason": "\(reason)", "version": "\(configuration.query.version)"])
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(configuration.postgres)
        } catch {
            let failure = ProjectorError.database("connecting for the rebuild failed", error)
            monitor.withLock { lastFailure = failure.description }
            throw failure
        }
        defer { connection.close() }
        do {
            let present = try connection.query("SELECT to_regclass('explore.projection_state') IS NOT NULL")
            guard present.first?[0] == "t" else {
                throw ProjectorError(code: .rebuildFailed, message: "explore.projection_state is missing: run "
                    + "explore-projector migrate up")
            }
            try RebuildStore.markStarted(
                version: configuration.query.version, on: connection, projection: feedName)
        } catch {
            let failure = ProjectorError.database("starting the rebuild failed", error)
            monitor.withLock { lastFailure = failure.description }
            throw failure
        }
        return try drive(on: connection)
    }

    private func drive(on connection: PostgresConnection) throws(ProjectorError) -> RebuildSummary {
        var machine = RebuildStateMachine(configuration: configuration.machine)
        var action = machine.handle(.start)
        var loaded: (store: ExploreStore, applied: Int64)?
        var lastPublished = clock.now.advanced(by: .seconds(-1))
        while true {
            let (wasRestarted, wasStopped) = monitor.withLock { () -> (Bool, Bool) in
                defer { restarted = false }
                return (restarted, stopped)
            }
            if wasRestarted {
                let next = machine.handle(.feedRestarted)
                if next != .ignore { action = next }
            }
            if wasStopped && !machine.isDone {
                action = machine.handle(.failed("the feed stopped during the rebuild"))
            }
            monitor.withLock {
                phase = machine.phase ?? phase
                rowsDone = machine.rowsDone
                rowsTotal = machine.rowsTotal
            }
            // For a CLI following the rebuild from another process; at most twice a second.
            if let current = progress, !machine.isDone, clock.now - lastPublished >= .milliseconds(500) {
                try? RebuildStore.publish(current, on: connection, projection: feedName)
                lastPublished = clock.now
            }
            let event: RebuildStateMachine.Event
            switch action {
            case .prepare:
                do {
                    let prepared = try RebuildStore.prepare(on: connection)
                    event = .prepared(lowestID: prepared.lowestID, highestID: prepared.highestID,
                                      expectedRows: prepared.expectedRows)
                } catch { event = .failed("\(error)") }
            case .fill(let lower, let upper):
                do {
                    event = .filled(rows: try RebuildStore.fill(configuration.query, lower: lower, upper: upper,
                                                                on: connection))
                } catch { event = .failed("\(error)") }
            case .createIndexes:
                do {
                    try RebuildStore.createIndexes(on: connection)
                    event = .indexed
                } catch { event = .failed("\(error)") }
            case .catchUp:
                // Take the ids touched so far; those touched meanwhile are left for the next round or the swap.
                let ids = monitor.withLock { () -> [Int64] in
                    defer { touched = [] }
                    return Array(touched)
                }
                do {
                    try RebuildStore.catchUp(ids, query: configuration.query, on: connection)
                    event = .caughtUp(touchedSince: monitor.withLock { touched.count })
                } catch {
                    monitor.withLock { touched.formUnion(ids) }
                    event = .failed("\(error)")
                }
            case .swap:
                // Wake the feed if it waits for changes; it also comes back after its poll interval.
                try? connection.notify(ProjectionDefinition.notificationChannel)
                switch waitForFeed(.swap) {
                case .swapped: event = .swapped
                case .blocked: event = .swapBlocked
                case .failed(let reason): event = .failed(reason)
                case .installed: event = .failed("unexpected reply to the swap")
                }
            case .contractAndLoad:
                do {
                    let dropStart = clock.now
                    do {
                        try RebuildStore.dropLeftovers(on: connection)
                    } catch {
                        // The new table is live; the next rebuild drops the old one.
                        logger.warning("dropping the old projection table failed", metadata: ["error": "\(error)"])
                    }
                    let loadStart = clock.now
                    if index != nil {
                        let (store, checkpoint) = try ProjectionStore.loadCache(on: connection, feed: feedName)
                        loaded = (store, checkpoint.appliedChanges)
                    }
                    logger.info("swapped; old table dropped, new cache loaded", metadata: [
                        "drop": "\(loadStart - dropStart)", "load": "\(clock.now - loadStart)",
                    ])
                    event = .loaded
                } catch { event = .failed("\(error)") }
            case .installCache:
                guard let cache = loaded else {
                    event = .installed
                    break
                }
                loaded = nil
                try? connection.notify(ProjectionDefinition.notificationChannel)
                switch waitForFeed(.install(cache.store, loadedApplied: cache.applied)) {
                case .installed: event = .installed
                case .failed(let reason): event = .failed(reason)
                case .swapped, .blocked: event = .failed("unexpected reply to the cache install")
                }
            case .finish:
                try? RebuildStore.markFinished(error: nil, on: connection, projection: feedName)
                monitor.withLock { lastSucceededStart = startedAt }
                let elapsed = progress?.elapsedSeconds ?? 0
                logger.info("rebuild finished", metadata: [
                    "rows": "\(machine.rowsDone)", "seconds": "\(elapsed)", "swap_attempts": "\(machine.swapAttempts)",
                ])
                return RebuildSummary(rows: machine.rowsDone, seconds: elapsed, version: configuration.query.version,
                                      swapAttempts: machine.swapAttempts)
            case .abort(let reason):
                try? RebuildStore.dropLeftovers(on: connection)
                try? RebuildStore.markFinished(error: reason, on: connection, projection: feedName)
                monitor.withLock { lastFailure = reason }
                let swapped = machine.hasSwapped ? " (the new table is live; the cache was not reloaded)" : ""
                throw ProjectorError(code: .rebuildFailed, message: reason + swapped)
            case .ignore:
                event = .failed("the rebuild reached an unexpected state")
            }
            action = machine.handle(event)
        }
    }

    /// Posts a step for the feed and waits for its reply; withdrawn when the feed restarts or stops first.
    private func waitForFeed(_ step: FeedStep) -> FeedReply {
        let deadline = clock.now.advanced(by: configuration.feedStepTimeout)
        return monitor.withLock { () -> FeedReply in
            reply = nil
            pendingStep = step
            while true {
                if let answer = reply {
                    reply = nil
                    return answer
                }
                if !stepTaken && (restarted || stopped || clock.now >= deadline) {
                    pendingStep = nil
                    if stopped { return .failed("the feed stopped during the rebuild") }
                    if restarted {
                        return .failed("the feed restarted during the rebuild; the live table is unchanged")
                    }
                    return .failed("the feed did not reach a point between batches within the step timeout")
                }
                monitor.wait(milliseconds: 50)
            }
        }
    }
}
