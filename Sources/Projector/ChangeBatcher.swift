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
    /// The key (listing or location id) of each of `entryIDs`, in the same order; empty when unknown, and then
    /// the batch is never split.
    public var entryKeys: [Int64] = []

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

    /// The batch divided by listing into at most `parts` batches, each holding its listings' outbox entries, so
    /// they can be applied side by side on as many connections; `[self]` when it names a location (a location
    /// expands to listings of every part), lacks ``entryKeys``, or names fewer than `minimumKeys` listings.
    ///
    /// Every list keeps its order, each listing and each entry lands in exactly one part, and a listing's part
    /// depends on its id alone.
    public func split(into parts: Int, minimumKeys: Int) -> [ChangeSet] {
        let keys = columnRecomputes.values.reduce(listingIDs.count) { $0 + $1.count }
        guard parts > 1, locationIDs.isEmpty, entryKeys.count == entryIDs.count, keys >= max(2, minimumKeys)
        else { return [self] }
        var result = [ChangeSet](repeating: ChangeSet(listingIDs: [], locationIDs: [], entryIDs: []), count: parts)
        for id in listingIDs { result[Self.part(of: id, parts)].listingIDs.append(id) }
        for (recompute, ids) in columnRecomputes {
            // Grouped here first: hashing a recompute hashes its statement text, too slow to do once per listing.
            var shares = [[Int64]](repeating: [], count: parts)
            for id in ids { shares[Self.part(of: id, parts)].append(id) }
            for (part, share) in shares.enumerated() where !share.isEmpty {
                result[part].columnRecomputes[recompute] = share
            }
        }
        for (id, key) in zip(entryIDs, entryKeys) {
            let part = Self.part(of: key, parts)
            result[part].entryIDs.append(id)
            result[part].entryKeys.append(key)
        }
        return result.filter { !$0.isEmpty }
    }

    /// A listing's part: the high bits of a multiplicative hash, so runs of ids spread evenly.
    private static func part(of id: Int64, _ parts: Int) -> Int {
        Int(((UInt64(bitPattern: id) &* 0x9E37_79B9_7F4A_7C15) >> 32) % UInt64(parts))
    }
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
    /// Pending outbox entries: id and key.
    private var entries: [(id: Int64, key: Int64)] = []
    private var deadline: UInt64?

    /// Creates an empty batcher.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Distinct keys pending.
    public var pendingKeys: Int { listingSources.count + locationIDs.count }
    /// Outbox entries pending.
    public var pendingEntries: Int { entries.count }
    /// Entries the open batch can take without passing ``Configuration/maximumKeys`` (an entry adds at most one
    /// key); at least 1, as a full batch is flushed before the next read.
    public var room: Int { max(1, configuration.maximumKeys - pendingKeys) }

    /// Adds entries read at `now`; returns when to flush.
    public mutating func add(_ entries: [OutboxEntry], now: UInt64) -> Action {
        for entry in entries {
            self.entries.append((entry.id, entry.key))
            switch entry.source.keyKind {
            case .listingID: listingSources[entry.key, default: 0] |= Self.bit(entry.source)
            case .locationID: locationIDs.insert(entry.key)
            }
        }
        if !self.entries.isEmpty && deadline == nil {
            let (seconds, attoseconds) = configuration.window.components
            let nanoseconds = UInt64(clamping: max(0, seconds)) &* 1_000_000_000
                &+ UInt64(clamping: max(0, attoseconds / 1_000_000_000))
            deadline = now.addingReportingOverflow(nanoseconds).overflow ? UInt64.max : now + nanoseconds
        }
        return tick(now: now)
    }

    /// What to do at `now` without new entries.
    public func tick(now: UInt64) -> Action {
        guard let deadline, !entries.isEmpty else { return .idle }
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
        entries.sort { $0.id < $1.id }
        var batch = ChangeSet(
            listingIDs: whole.sorted(), locationIDs: locationIDs.sorted(), entryIDs: entries.map(\.id))
        batch.entryKeys = entries.map(\.key)
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
        entries = []
        deadline = nil
    }
}
