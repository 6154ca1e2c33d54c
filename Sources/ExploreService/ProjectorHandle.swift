import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The service's feed driver: started once, asked for full rebuilds (which it runs between its own batches, so
/// only the driver ever writes to the index), stopped once.
final class ProjectorHandle: Sendable {
    private let driver: any RebuildableFeed

    init(driver: any RebuildableFeed) {
        self.driver = driver
    }

    /// The driver's counters.
    var status: FeedStatus { driver.status }

    /// Starts the driver and blocks until it has bootstrapped the cache. Blocking: call off the cooperative pool.
    /// - Throws: `.projectionFailed` after `attempts` failed sessions without a bootstrap.
    func startAndAwaitBootstrap(attempts: Int) throws(ExploreServiceError) {
        driver.start()
        // Bounded by failures, not by time: a large projection may take a while to load, a broken one fails
        // (and logs why) within a few backoff delays.
        while true {
            let status = driver.status
            if status.isBootstrapped { return }
            if status.failures >= max(1, attempts) {
                throw ExploreServiceError(.projectionFailed, "the projector could not load the cache from the "
                    + "projection table after \(status.failures) attempt(s): "
                    + (status.lastError ?? "see the log for the cause"))
            }
            usleep(5_000)
        }
    }

    /// Rebuilds the projection table beside the live one and swaps it in, then the cache, while the feed keeps
    /// going. Blocking: call off the cooperative pool.
    func rebuild() throws(ExploreServiceError) {
        do {
            _ = try driver.rebuild()
        } catch {
            throw ExploreServiceError(.projectionFailed, "\(error)")
        }
    }

    /// Stops the driver after its batch in flight.
    func stop() {
        driver.stop()
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
