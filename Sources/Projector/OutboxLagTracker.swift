public import Postgres

/// Measures how far the projection trails the outbox: the entries not applied yet and the age of the oldest.
///
/// Applied entries are deleted in the transaction that applies them, so every entry left in the outbox is
/// pending. Both figures come from one cheap statement: the count is capped (a scan of at most
/// ``countLimit`` rows) and the oldest entry is found through the primary key. The driver samples it at most
/// every ``interval``, not per batch, so a busy feed does not pay for it on every commit; and when a
/// measurement itself is slow (a large backlog to count), the next one waits ``costFactor`` times as long as it
/// took, so measuring never takes more than about 5 % of the driver's time.
public struct OutboxLagTracker: Sendable {
    /// One measurement.
    public struct Sample: Sendable, Hashable {
        /// Outbox entries not applied yet (at most ``OutboxLagTracker/countLimit``).
        public var pendingChanges: Int64
        /// Age of the oldest entry not applied yet, in milliseconds; 0 when nothing is pending; `nil` when the
        /// outbox has no `created_at` column (a database migrated before it existed).
        public var lagMilliseconds: Double?

        public init(pendingChanges: Int64, lagMilliseconds: Double?) {
            self.pendingChanges = pendingChanges
            self.lagMilliseconds = lagMilliseconds
        }
    }

    /// Counting stops here: beyond it the exact figure does not matter to an operator, and the scan stays cheap.
    public static let countLimit = 1_000_000

    /// The pause after a measurement is at least this many times the measurement's own duration.
    public static let costFactor: UInt64 = 20

    /// Shortest time between two measurements, in nanoseconds.
    public let interval: UInt64
    private var nextDue: UInt64?
    private var hasCreatedAt: Bool?

    /// - Parameter interval: shortest time between two measurements.
    public init(interval: Duration) {
        let components = interval.components
        self.interval = UInt64(max(0, components.seconds)) * 1_000_000_000
            + UInt64(max(0, components.attoseconds / 1_000_000_000))
    }

    /// Whether a measurement is due at `now` (nanoseconds on the caller's monotonic clock).
    public func isDue(now: UInt64) -> Bool {
        guard let nextDue else { return true }
        return now >= nextDue
    }

    /// Schedules the next measurement after one that started at `now` and took `cost` nanoseconds.
    mutating func scheduleNext(now: UInt64, cost: UInt64) {
        nextDue = now &+ max(interval, cost.multipliedReportingOverflow(by: Self.costFactor).partialValue)
    }

    /// Measures on `connection` (outside any transaction of the caller's, or inside: it only reads).
    public mutating func measure(on connection: PostgresConnection, now: UInt64) throws(ProjectorError) -> Sample {
        let clock = ContinuousClock()
        let began = clock.now
        defer {
            let cost = began.duration(to: clock.now).components
            scheduleNext(now: now, cost: UInt64(max(0, cost.seconds)) * 1_000_000_000
                + UInt64(max(0, cost.attoseconds / 1_000_000_000)))
        }
        let row: [String?]
        do {
            if hasCreatedAt == nil {
                let result = try connection.query("""
                    SELECT EXISTS (SELECT 1 FROM pg_attribute
                                   WHERE attrelid = to_regclass('explore.change_outbox') AND attname = 'created_at'
                                     AND NOT attisdropped)
                    """)
                hasCreatedAt = result.first?[0] == "t"
            }
            let age = hasCreatedAt == true
                ? "(SELECT extract(epoch FROM clock_timestamp() - created_at) * 1000 FROM explore.change_outbox "
                    + "ORDER BY id LIMIT 1)"
                : "NULL::float8"
            let result = try connection.query("""
                SELECT (SELECT count(*) FROM (SELECT 1 FROM explore.change_outbox LIMIT $1) AS pending), \(age)
                """, [Int64(Self.countLimit)])
            row = result.first.map { [$0[0], $0[1]] } ?? []
        } catch {
            throw ProjectorError.database("measuring the outbox lag failed", error)
        }
        guard row.count == 2, let pending = row[0].flatMap({ Int64($0) }) else {
            throw ProjectorError(code: .invalidRow, message: "the outbox lag query returned no row")
        }
        let lag: Double? = hasCreatedAt == true
            ? (pending == 0 ? 0 : max(0, row[1].flatMap { Double($0) } ?? 0)) : nil
        return Sample(pendingChanges: pending, lagMilliseconds: lag)
    }
}
