public import ExploreQuery

/// What a running feed reports: for `STATS`, `/metrics`, `/readyz` and tests. Every feed (the outbox, Kafka)
/// fills the same fields, so the service does not care which one runs.
public struct FeedStatus: Sendable, Hashable {
    /// The cache holds the projection (bootstrapped at least once).
    public var isBootstrapped = false
    /// Changes applied since the projection was built, as recorded with the checkpoint the cache reflects.
    public var appliedChanges: Int64 = 0
    /// The same count as of the last batch committed to PostgreSQL: ahead of ``appliedChanges`` while the cache
    /// applies that batch.
    public var committedChanges: Int64 = 0
    /// Batches committed by this driver.
    public var batches = 0
    /// Seconds this driver's batches spent in the database (recompute, feed position, commit), in all. With
    /// ``cacheSeconds`` it tells which side a slow feed waits on.
    public var databaseSeconds: Double = 0
    /// Seconds this driver's batches spent being applied to the cache after commit, in all.
    public var cacheSeconds: Double = 0
    /// Failures recovered from.
    public var failures = 0
    /// The feed is connected to its source and following it (false while reconnecting after a failure).
    public var isConnected = false {
        didSet {
            if isConnected {
                disconnectedSince = nil
            } else if oldValue || disconnectedSince == nil {
                disconnectedSince = .now
            }
        }
    }
    /// When the feed was first marked disconnected since it last followed its source; nil while connected and
    /// before it was ever marked (``isConnected`` keeps it).
    public private(set) var disconnectedSince: ContinuousClock.Instant?
    /// The last failure, kept until the feed follows its source again.
    public var lastError: String?
    /// Changes committed at the source but not yet applied; `nil` when unknown.
    public var pendingChanges: Int64?
    /// How far the cache trails the source, in milliseconds; `nil` when unknown.
    public var lagMilliseconds: Double?
    /// Events that could not be applied (malformed, unknown table, missing key): counted, logged, dead-lettered
    /// when configured, and skipped so they never stall the feed.
    public var rejectedEvents: Int64 = 0
    /// Events the source deleted before the feed applied them (a Kafka topic's retention outran the feed): the
    /// projection may miss their changes until it is rebuilt.
    public var lostEvents: Int64 = 0
    /// The rebuild in progress, if any.
    public var rebuild: RebuildProgress?

    public init() {}

    /// Adds one committed batch and the time it took on each side.
    public mutating func recordBatch(database: Duration, cache: Duration) {
        batches += 1
        databaseSeconds += database.seconds
        cacheSeconds += cache.seconds
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

/// Progress of a full rebuild, for operators.
public struct RebuildProgress: Sendable, Hashable {
    /// What the rebuild is doing now.
    public enum Phase: String, Sendable, Hashable, CaseIterable {
        /// Building the new projection table from the defining query.
        case building
        /// Applying the changes made while it was built.
        case catchingUp
        /// Swapping the new table in.
        case swapping
        /// Loading the new cache off to the side.
        case loadingCache
    }

    public var phase: Phase
    /// Rows written so far.
    public var rowsDone: Int64
    /// Rows expected in all; `nil` when unknown.
    public var rowsTotal: Int64?
    /// Seconds since the rebuild started.
    public var elapsedSeconds: Double

    public init(phase: Phase, rowsDone: Int64, rowsTotal: Int64?, elapsedSeconds: Double) {
        self.phase = phase
        self.rowsDone = rowsDone
        self.rowsTotal = rowsTotal
        self.elapsedSeconds = elapsedSeconds
    }

    /// Rows per second so far.
    public var rowsPerSecond: Double { elapsedSeconds > 0 ? Double(rowsDone) / elapsedSeconds : 0 }

    /// Estimated seconds left; `nil` without a total or a rate.
    public var etaSeconds: Double? {
        guard let rowsTotal, rowsPerSecond > 0 else { return nil }
        return Double(max(0, rowsTotal - rowsDone)) / rowsPerSecond
    }
}

/// A change feed keeping the projection table and the cache current: the outbox driver, the Kafka driver.
///
/// `start` runs the feed on a thread of its own and returns; `stop` finishes the batch in flight and returns when
/// the feed has stopped. A driver is started at most once; to restart, make a new one.
public protocol FeedDriver: AnyObject, Sendable {
    /// The cache the feed keeps current.
    var index: ExploreIndex { get }
    /// A snapshot of the feed's counters.
    var status: FeedStatus { get }
    /// Starts following the feed on a thread of its own.
    func start()
    /// Stops after the batch in flight and waits for the feed's thread to end.
    func stop()
}
