/// One outbox entry: a change to a base table, appended by the writing transaction.
public struct OutboxEntry: Sendable, Hashable {
    /// Position in the outbox; assigned when the row is inserted, so it is NOT commit order.
    public var id: Int64
    /// The writer's top-level transaction id.
    public var xid: UInt64
    /// The base table that changed.
    public var source: ProjectionDefinition.Source
    /// A listing id, or a location id for `.locations`.
    public var key: Int64

    /// Creates an entry.
    public init(id: Int64, xid: UInt64, source: ProjectionDefinition.Source, key: Int64) {
        self.id = id
        self.xid = xid
        self.source = source
        self.key = key
    }
}

/// Where the feed stands, as stored in `explore.checkpoint`.
///
/// Every entry of a transaction visible in `low` has been applied. When `target` is set, a window is half done:
/// the entries of transactions visible in `target` but not in `low` have been applied up to outbox id `lastID`.
public struct FeedPosition: Sendable, Hashable {
    /// Transactions visible here are fully applied.
    public var low: TransactionSnapshot
    /// The snapshot closing the window being applied, if one is half done.
    public var target: TransactionSnapshot?
    /// Within the window, entries up to this outbox id are applied; 0 without a window.
    public var lastID: Int64

    /// Creates a position.
    public init(low: TransactionSnapshot, target: TransactionSnapshot? = nil, lastID: Int64 = 0) {
        self.low = low
        self.target = target
        self.lastID = target == nil ? 0 : lastID
    }
}

/// Reads the outbox in windows of transaction visibility, so an entry whose transaction commits after entries
/// with higher ids is never skipped.
///
/// ## Why not "last id seen"
/// Outbox ids are assigned at insert, commits happen later and in any order: a reader that has seen id 8 may
/// later see id 7 commit. Remembering only the highest id skips 7.
///
/// ## The scheme (PgQ's, proven in production for years)
/// A position is a snapshot `low` (see ``FeedPosition``). A fetch takes a new snapshot `target` in the same
/// statement that reads the outbox and returns the entries whose transaction is visible in `target` but not in
/// `low`. Every transaction that ever commits becomes visible in exactly one such window (snapshots only grow:
/// once visible, always visible), and all transactions visible in `target` have committed, so the window's
/// contents are final when it is read: no entry can appear in it later. After the window is applied, `target`
/// becomes the new `low`. Entries of aborted transactions are never visible and are never read.
///
/// A large window is read in pages ordered by outbox id; `lastID` records progress inside the window. Since the
/// window's contents are final, paging by id within it cannot skip anything either.
///
/// The checkpoint is written in the same transaction as the projection rows it covers, and the applied entries
/// are deleted there too, so a crash re-reads exactly the unapplied entries.
///
/// The machine is pure: the driver asks for the next ``FetchRequest``, runs it, reports the ``FetchResult`` and
/// later whether the batch holding the entries committed or rolled back.
public struct OutboxFeedStateMachine: Sendable {
    /// What the driver must read next.
    public struct FetchRequest: Sendable, Hashable {
        /// Entries of transactions visible here are already applied.
        public var low: TransactionSnapshot
        /// The window's closing snapshot; `nil`: take `pg_current_snapshot()` in the reading statement.
        public var target: TransactionSnapshot?
        /// Only entries with a larger outbox id.
        public var afterID: Int64
        /// At most this many entries, in outbox id order.
        public var limit: Int
    }

    /// What a fetch returned.
    public struct FetchResult: Sendable, Hashable {
        /// The window's closing snapshot (the request's target, or the one the statement took).
        public var target: TransactionSnapshot
        /// The entries the server returned for the request.
        public var entries: [OutboxEntry]
        /// The request's ``FetchRequest/limit``: a result holding that many entries is a full page, so more may
        /// follow in the same window.
        public var limit: Int

        /// Creates a result of a request for at most `limit` entries.
        public init(target: TransactionSnapshot, entries: [OutboxEntry], limit: Int) {
            self.target = target
            self.entries = entries
            self.limit = limit
        }
    }

    /// What the driver does after a fetch.
    public enum Action: Sendable, Hashable {
        /// Hand these entries to the batcher; fetch again at once when `more` (the page was full, or it ended a
        /// window opened earlier, so newer commits may be waiting).
        case deliver([OutboxEntry], more: Bool)
        /// The window was empty: wait for a notification or the poll interval.
        case idle
    }

    /// The position the database holds (last committed batch).
    public private(set) var committed: FeedPosition
    /// The position after every entry delivered so far, committed or not.
    public private(set) var read: FeedPosition
    /// Page size of one fetch.
    public let pageSize: Int

    /// Starts from a checkpoint read from the database.
    public init(checkpoint: FeedPosition, pageSize: Int = 10_000) {
        committed = checkpoint
        read = checkpoint
        self.pageSize = max(1, pageSize)
    }

    /// The next read to perform, for at most `limit` entries (and never more than ``pageSize``). Why a smaller
    /// limit: the driver asks only for what its open batch can still take, so no batch passes its size limit
    /// however large the backlog (a page may end anywhere inside a window; the next read resumes after it).
    public func nextFetch(limit: Int = .max) -> FetchRequest {
        FetchRequest(low: read.low, target: read.target, afterID: read.lastID, limit: max(1, min(pageSize, limit)))
    }

    /// Accepts what a fetch for ``nextFetch(limit:)`` returned.
    ///
    /// Entries outside the window (a server returning more than asked) are dropped, so the invariant holds here
    /// whatever the SQL did.
    public mutating func fetched(_ result: FetchResult) -> Action {
        let target = result.target
        let window = result.entries
            .filter { target.isVisible($0.xid) && !read.low.isVisible($0.xid) && $0.id > read.lastID }
            .sorted { $0.id < $1.id }
        let pageIsFull = result.entries.count >= result.limit
        // The last page of an old window says nothing about commits since: read again with a fresh snapshot.
        let more = pageIsFull || read.target != nil
        if pageIsFull, let lastID = window.last?.id ?? result.entries.map(\.id).max() {
            read = FeedPosition(low: read.low, target: target, lastID: max(read.lastID, lastID))
        } else {
            read = FeedPosition(low: target)
        }
        return window.isEmpty && !more ? .idle : .deliver(window, more: more)
    }

    /// The batch holding every delivered entry committed: the read position is now the database's.
    public mutating func batchCommitted() {
        committed = read
    }

    /// The batch rolled back (or its outcome is unknown): deliveries since the last commit are forgotten and
    /// will be read again from the committed position.
    public mutating func batchRolledBack() {
        read = committed
    }

    /// Restarts from a position re-read from the database (after a reconnect).
    public mutating func reset(to checkpoint: FeedPosition) {
        committed = checkpoint
        read = checkpoint
    }
}
