public import CoreMetrics
import Foundation
public import Projector

/// What a scrape records of the cache.
public struct CacheFigures: Sendable {
    public var listings: Int
    public var memoryBytes: Int
    /// Times the cache laid its store out again since it was created (see `ExploreIndex.apply(_:)`).
    public var relayouts: Int
    /// Rows placed out of their area since the store was loaded or laid out; a relayout starts at an eighth of
    /// the rows.
    public var rowsOutOfPlace: Int

    public init(listings: Int, memoryBytes: Int, relayouts: Int, rowsOutOfPlace: Int) {
        self.listings = listings
        self.memoryBytes = memoryBytes
        self.relayouts = relayouts
        self.rowsOutOfPlace = rowsOutOfPlace
    }
}

/// The change feed and the cache as metrics, through the swift-metrics API. The feed keeps totals in its
/// ``FeedStatus`` and the cache its ``CacheFigures``; ``update(status:cache:)`` (called before each scrape) turns
/// them into counter increments and gauge values:
///
/// - counters `explore_feed_applied_changes_total`, `explore_feed_batches_total`, `explore_feed_failures_total`,
///   `explore_feed_rejected_events_total`, and `explore_feed_database_seconds_total` and
///   `explore_feed_cache_seconds_total` (the batches' time on each side: divided by the batch count's growth,
///   the mean time a batch spends in the database and in the cache), `explore_cache_relayouts_total`;
/// - gauges `explore_feed_lag_milliseconds`, `explore_feed_pending_changes`, `explore_feed_connected`,
///   `explore_cache_bootstrapped`, `explore_cache_listings`, `explore_cache_memory_bytes`,
///   `explore_cache_rows_out_of_place`,
///   `explore_rebuild_in_progress`, `explore_rebuild_rows_done`, `explore_rebuild_rows_total`.
public final class FeedMetrics: @unchecked Sendable {
    // Safe: `previous` and `previousCache` are read and written only while holding `lock`; the handles are
    // thread-safe.
    private let lock = NSLock()
    private var previous: FeedStatus?
    private var previousCache: CacheFigures?

    private let appliedChanges: Counter
    private let batches: Counter
    private let failures: Counter
    private let rejectedEvents: Counter
    private let databaseSeconds: FloatingPointCounter
    private let cacheSeconds: FloatingPointCounter
    private let lag: Gauge
    private let pending: Gauge
    private let connected: Gauge
    private let bootstrapped: Gauge
    private let listings: Gauge
    private let memory: Gauge
    private let relayouts: Counter
    private let rowsOutOfPlace: Gauge
    private let rebuildInProgress: Gauge
    private let rebuildRowsDone: Gauge
    private let rebuildRowsTotal: Gauge

    /// Makes the metrics with `factory` (by default the process's `MetricsSystem`).
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        appliedChanges = Counter(label: "explore_feed_applied_changes_total", factory: factory)
        batches = Counter(label: "explore_feed_batches_total", factory: factory)
        failures = Counter(label: "explore_feed_failures_total", factory: factory)
        rejectedEvents = Counter(label: "explore_feed_rejected_events_total", factory: factory)
        databaseSeconds = FloatingPointCounter(label: "explore_feed_database_seconds_total", factory: factory)
        cacheSeconds = FloatingPointCounter(label: "explore_feed_cache_seconds_total", factory: factory)
        lag = Gauge(label: "explore_feed_lag_milliseconds", factory: factory)
        pending = Gauge(label: "explore_feed_pending_changes", factory: factory)
        connected = Gauge(label: "explore_feed_connected", factory: factory)
        bootstrapped = Gauge(label: "explore_cache_bootstrapped", factory: factory)
        listings = Gauge(label: "explore_cache_listings", factory: factory)
        memory = Gauge(label: "explore_cache_memory_bytes", factory: factory)
        relayouts = Counter(label: "explore_cache_relayouts_total", factory: factory)
        rowsOutOfPlace = Gauge(label: "explore_cache_rows_out_of_place", factory: factory)
        rebuildInProgress = Gauge(label: "explore_rebuild_in_progress", factory: factory)
        rebuildRowsDone = Gauge(label: "explore_rebuild_rows_done", factory: factory)
        rebuildRowsTotal = Gauge(label: "explore_rebuild_rows_total", factory: factory)
    }

    /// Records the feed's current status and the cache's figures.
    ///
    /// Counters advance by the growth of the status's totals since the last call. A total that went down
    /// means a fresh driver started counting from zero (after a cache rebuild), so its whole value is new;
    /// the applied-change count is the checkpoint's and only drops when the projection is built anew, in which
    /// case nothing is added.
    public func update(status: FeedStatus, cache: CacheFigures) {
        lock.withLock {
            relayouts.increment(by: Self.growth(from: previousCache.map { Int64($0.relayouts) },
                                                to: Int64(cache.relayouts), restartCounts: false))
            previousCache = cache
            let before = previous
            previous = status
            appliedChanges.increment(by: Self.growth(from: before?.appliedChanges, to: status.appliedChanges,
                                                     restartCounts: before == nil))
            batches.increment(by: Self.growth(from: before.map { Int64($0.batches) }, to: Int64(status.batches),
                                              restartCounts: true))
            failures.increment(by: Self.growth(from: before.map { Int64($0.failures) }, to: Int64(status.failures),
                                               restartCounts: true))
            rejectedEvents.increment(by: Self.growth(from: before?.rejectedEvents, to: status.rejectedEvents,
                                                     restartCounts: true))
            databaseSeconds.increment(by: Self.growth(from: before?.databaseSeconds, to: status.databaseSeconds))
            cacheSeconds.increment(by: Self.growth(from: before?.cacheSeconds, to: status.cacheSeconds))
        }
        if let milliseconds = status.lagMilliseconds { lag.record(milliseconds) }
        if let changes = status.pendingChanges { pending.record(changes) }
        connected.record(status.isConnected ? 1 : 0)
        bootstrapped.record(status.isBootstrapped ? 1 : 0)
        listings.record(cache.listings)
        memory.record(cache.memoryBytes)
        rowsOutOfPlace.record(cache.rowsOutOfPlace)
        rebuildInProgress.record(status.rebuild == nil ? 0 : 1)
        if let rebuild = status.rebuild {
            rebuildRowsDone.record(rebuild.rowsDone)
            if let total = rebuild.rowsTotal { rebuildRowsTotal.record(total) }
        }
    }

    /// How much a total grew; a total that shrank counts in full when `restartCounts`, else as 0.
    static func growth(from before: Int64?, to now: Int64, restartCounts: Bool) -> Int64 {
        guard let before else { return max(0, now) }
        if now >= before { return now - before }
        return restartCounts ? max(0, now) : 0
    }

    /// The same for a total of seconds, which only a fresh driver resets.
    static func growth(from before: Double?, to now: Double) -> Double {
        guard let before, now >= before else { return max(0, now) }
        return now - before
    }
}
