/// The listings and locations a batch must recompute, and the outbox entries it consumes.
public struct ChangeSet: Sendable, Hashable {
    /// Listing ids to recompute whole, ascending and distinct.
    public var listingIDs: [Int64]
    /// Locations whose listings must be recomputed whole, ascending and distinct.
    public var locationIDs: [Int64]
    /// Listings whose entries in this batch all come from tables a column recompute covers, by that recompute;
    /// ascending, distinct, and in no other list.
    public var columnRecomputes: [ColumnRecompute: [Int64]] = [:]
    /// The outbox entries the batch consumes, ascending.
    public var entryIDs: [Int64]

    /// Creates a change set.
    public init(listingIDs: [Int64], locationIDs: [Int64], entryIDs: [Int64]) {
        self.listingIDs = listingIDs
        self.locationIDs = locationIDs
        self.entryIDs = entryIDs
    }

    /// Every listing id the batch names (locations not expanded), ascending.
    public var allListingIDs: [Int64] { (listingIDs + columnRecomputes.values.joined()).sorted() }

    /// Whether the batch consumes nothing.
    public var isEmpty: Bool { entryIDs.isEmpty }
}

/// Groups outbox entries into batches by a time window and a size limit; a key changed many times while the
/// batch is open is recomputed once.
///
/// Pure: the caller passes the current time (any monotonic nanosecond count) and performs the returned action.
public struct ChangeBatcher: Sendable {
    /// When a batch closes.
    public struct Configuration: Sendable, Hashable {
        /// How long the first entry of a batch may wait for others; zero flushes at once.
        public var window: Duration
        /// The most distinct keys (listings plus locations) a batch holds; it closes as soon as it holds this
        /// many. The driver reads no more entries than the open batch has ``ChangeBatcher/room`` for.
        public var maximumKeys: Int

        /// Creates a configuration; the defaults trade ≤ 5 ms of latency for fewer, larger transactions. The
        /// default size is the driver's outbox page: an outbox read sorts the entries of its window, which grow
        /// with the backlog, so batches of half a page drained a backlog of 200,000 changes 10-15 % slower.
        public init(window: Duration = .milliseconds(5), maximumKeys: Int = 10_000) {
            self.window = window
            self.maximumKeys = max(1, maximumKeys)
        }
    }

    /// What the driver does next.
    public enum Action: Sendable, Hashable {
        /// Nothing is pending.
        case idle
        /// Close the batch now (``takeBatch()``) and apply it.
        case flushNow
        /// Flush at this instant (nanoseconds) unless more entries fill the batch first.
        case flushAt(nanoseconds: UInt64)
    }

    /// The configuration.
    public let configuration: Configuration
    /// The tables each pending listing's entries came from, one bit per ``ProjectionDefinition/Source`` case.
    private var listingSources: [Int64: UInt8] = [:]
    private var locationIDs: Set<Int64> = []
    private var entryIDs: [Int64] = []
    private var deadline: UInt64?

    /// Creates an empty batcher.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Distinct keys pending.
    public var pendingKeys: Int { listingSources.count + locationIDs.count }
    /// Outbox entries pending.
    public var pendingEntries: Int { entryIDs.count }
    /// Entries the open batch can take without passing ``Configuration/maximumKeys`` (an entry adds at most one
    /// key); at least 1, as a full batch is flushed before the next read.
    public var room: Int { max(1, configuration.maximumKeys - pendingKeys) }

    /// Adds entries read at `now`; returns when to flush.
    public mutating func add(_ entries: [OutboxEntry], now: UInt64) -> Action {
        for entry in entries {
            entryIDs.append(entry.id)
            switch entry.source.keyKind {
            case .listingID: listingSources[entry.key, default: 0] |= Self.bit(entry.source)
            case .locationID: locationIDs.insert(entry.key)
            }
        }
        if !entryIDs.isEmpty && deadline == nil {
            let (seconds, attoseconds) = configuration.window.components
            let nanoseconds = UInt64(clamping: max(0, seconds)) &* 1_000_000_000
                &+ UInt64(clamping: max(0, attoseconds / 1_000_000_000))
            deadline = now.addingReportingOverflow(nanoseconds).overflow ? UInt64.max : now + nanoseconds
        }
        return tick(now: now)
    }

    /// What to do at `now` without new entries.
    public func tick(now: UInt64) -> Action {
        guard let deadline, !entryIDs.isEmpty else { return .idle }
        if pendingKeys >= configuration.maximumKeys || now >= deadline { return .flushNow }
        return .flushAt(nanoseconds: deadline)
    }

    /// Closes the batch: returns what it holds and starts an empty one.
    public mutating func takeBatch() -> ChangeSet {
        var whole: [Int64] = []
        var columnRecomputes: [ColumnRecompute: [Int64]] = [:]
        for (mask, ids) in Dictionary(grouping: listingSources.keys, by: { listingSources[$0]! }) {
            let sources = Set(ProjectionDefinition.Source.allCases.filter { mask & Self.bit($0) != 0 })
            if let recompute = ProjectionDefinition.columnRecompute(covering: sources) {
                columnRecomputes[recompute, default: []] += ids
            } else {
                whole += ids
            }
        }
        var batch = ChangeSet(
            listingIDs: whole.sorted(), locationIDs: locationIDs.sorted(), entryIDs: entryIDs.sorted())
        batch.columnRecomputes = columnRecomputes.mapValues { $0.sorted() }
        discard()
        return batch
    }

    private static func bit(_ source: ProjectionDefinition.Source) -> UInt8 {
        UInt8(1) << UInt8(ProjectionDefinition.Source.allCases.firstIndex(of: source)!)
    }

    /// Drops everything pending (the feed will deliver it again after a rollback).
    public mutating func discard() {
        listingSources = [:]
        locationIDs = []
        entryIDs = []
        deadline = nil
    }
}
