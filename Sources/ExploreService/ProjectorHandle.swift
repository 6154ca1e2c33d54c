import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The running feed driver, replaceable as a whole: a cache rebuild stops the current driver after its batch in
/// flight and starts a fresh one, whose bootstrap reloads the cache from the projection table off to the side and
/// swaps it in. Only one driver ever writes to the index, so rebuild and feed never race.
final class ProjectorHandle: @unchecked Sendable {
    // Safe: `driver` and `stopped` are read and written only while holding `lock`; `lifecycle` serializes whole
    // start / restart / stop sequences so two of them never interleave.
    private let lock = ProjectorLockBox()
    private let lifecycle = ProjectorLockBox()
    private var driver: any FeedDriver
    private var stopped = false
    private let makeDriver: @Sendable () -> any FeedDriver

    /// - Parameter makeDriver: creates a fresh, not yet started driver (once now, once per restart).
    init(makeDriver: @escaping @Sendable () -> any FeedDriver) {
        self.makeDriver = makeDriver
        self.driver = makeDriver()
    }

    /// The current driver's counters.
    var status: FeedStatus { lock.withLock { driver.status } }

    /// Starts the driver and blocks until it has bootstrapped the cache. Blocking: call off the cooperative pool.
    /// - Throws: `.projectionFailed` after `attempts` failed sessions without a bootstrap.
    func startAndAwaitBootstrap(attempts: Int) throws(ExploreServiceError) {
        try lifecycle.withLock { () throws(ExploreServiceError) in
            let current = lock.withLock { driver }
            current.start()
            try Self.awaitBootstrap(current, attempts: attempts)
        }
    }

    /// Replaces the driver: the old one finishes its batch in flight and stops, the new one reloads the cache
    /// from the projection table (searches keep using the old cache until the swap) and follows the feed from
    /// the checkpoint. Blocking: call off the cooperative pool.
    func restart(attempts: Int) throws(ExploreServiceError) {
        try lifecycle.withLock { () throws(ExploreServiceError) in
            guard !lock.withLock({ stopped }) else {
                throw ExploreServiceError(.projectionFailed, "the service is shutting down")
            }
            let old = lock.withLock { driver }
            old.stop()
            let fresh = makeDriver()
            lock.withLock { driver = fresh }
            fresh.start()
            try Self.awaitBootstrap(fresh, attempts: attempts)
        }
    }

    /// Rebuilds the projection table beside the live one and swaps it in, then the cache, while the feed keeps
    /// going (a feed that cannot rebuild its table only reloads its cache, through ``restart(attempts:)``).
    /// Blocking: call off the cooperative pool.
    func rebuild(attempts: Int) throws(ExploreServiceError) {
        let current = lock.withLock { driver }
        guard let rebuildable = current as? any RebuildableFeed else {
            try restart(attempts: attempts)
            return
        }
        do {
            _ = try rebuildable.rebuild()
        } catch {
            throw ExploreServiceError(.projectionFailed, "\(error)")
        }
    }

    /// Stops the current driver after its batch in flight; later restarts are refused.
    func stop() {
        lifecycle.withLock {
            let current = lock.withLock { () -> any FeedDriver in
                stopped = true
                return driver
            }
            current.stop()
        }
    }

    private static func awaitBootstrap(_ driver: any FeedDriver, attempts: Int) throws(ExploreServiceError) {
        // Bounded by failures, not by time: a large projection may take a while to load, a broken one fails
        // (and logs why) within a few backoff delays.
        while true {
            let status = driver.status
            if status.isBootstrapped { return }
            if status.failures >= max(1, attempts) {
                throw ExploreServiceError(.projectionFailed, "the projector could not load the cache from the "
                    + "projection table after \(status.failures) attempt(s); see the log for the cause")
            }
            usleep(5_000)
        }
    }
}

/// A pthread mutex; `withLock` scopes every access.
final class ProjectorLockBox: @unchecked Sendable {
    private var mutex = pthread_mutex_t()

    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
