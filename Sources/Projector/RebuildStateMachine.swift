/// The steps of a full rebuild, as a pure machine: the coordinator reports what happened (``Event``) and performs
/// the ``Action`` returned.
///
/// ## The rebuild
/// 1. **Prepare** (worker): create the side table `explore.listings_projection_rebuild` with the live table's
///    columns and checks; read the id range of `property.listings`. The coordinator records every listing the
///    feed recomputes from before this point on ("touched" ids).
/// 2. **Fill** (worker): copy the defining query into the side table in chunks of listing ids, one short
///    transaction each, while the feed keeps applying batches to the live table.
/// 3. **Index** (worker): the live table's indexes, constraints, owner and grants on the side table; ANALYZE.
/// 4. **Catch up** (worker): recompute the ids touched so far into the side table, in rounds, until few are left.
/// 5. **Swap** (feed, between two batches, one transaction): recompute the last touched ids, rename the live
///    table and its indexes away and the side table and its indexes in, record the definition's version. A lock
///    timeout rolls it back; it is retried between the next batches.
/// 6. **Contract and load** (worker): drop the old table; load a new cache from the new table off to the side,
///    while the feed keeps applying batches to the old cache (and remembers them).
/// 7. **Install** (feed, between two batches): replay the batches the new cache missed, swap it in.
///
/// ## Why nothing is lost
/// A row of the side table is the defining query at its chunk's snapshot. A change committed after that snapshot
/// was either applied by the feed before the swap (its listing was recorded as touched, so it is recomputed into
/// the side table before the swap commits) or is still in the outbox at the swap (the feed applies it to the new
/// table afterwards). The swap runs between batches, so no batch straddles it.
public struct RebuildStateMachine: Sendable {
    /// Sizes and bounds.
    public struct Configuration: Sendable, Hashable {
        /// Listing ids per fill chunk.
        public var chunkSize: Int64
        /// At most this many touched ids are left for the swap transaction to recompute.
        public var swapThreshold: Int
        /// Catch-up rounds before swapping anyway (under a write rate the rounds cannot outrun).
        public var maximumCatchUpRounds: Int
        /// Swap attempts that may hit the lock timeout before the rebuild gives up.
        public var maximumSwapAttempts: Int

        /// Creates a configuration.
        public init(chunkSize: Int64 = 50_000, swapThreshold: Int = 2_000, maximumCatchUpRounds: Int = 10,
                    maximumSwapAttempts: Int = 100) {
            self.chunkSize = max(1, chunkSize)
            self.swapThreshold = max(0, swapThreshold)
            self.maximumCatchUpRounds = max(1, maximumCatchUpRounds)
            self.maximumSwapAttempts = max(1, maximumSwapAttempts)
        }
    }

    /// Where the rebuild stands.
    public enum State: Sendable, Hashable {
        /// Not started.
        case idle
        /// Creating the side table.
        case preparing
        /// Filling chunks; the next starts at `next`, ids below `end` are built.
        case filling(next: Int64, end: Int64)
        /// Creating the side table's indexes, constraints and grants.
        case indexing
        /// Catching up; `round` rounds done.
        case catchingUp(round: Int)
        /// Waiting for the feed to swap; `attempt` counts tries, this one included.
        case swapping(attempt: Int)
        /// The new table is live; dropping the old one and loading the new cache.
        case contracting
        /// Waiting for the feed to install the new cache.
        case installingCache
        /// Done: the new table and cache are live.
        case finished
        /// Given up, for this reason.
        case failed(String)
    }

    /// What happened.
    public enum Event: Sendable, Hashable {
        /// The rebuild was asked for.
        case start
        /// The side table exists; the listings' id range (`nil` when there are none) and the expected row count.
        case prepared(lowestID: Int64?, highestID: Int64?, expectedRows: Int64?)
        /// A chunk was written.
        case filled(rows: Int64)
        /// Indexes, constraints and grants are on the side table.
        case indexed
        /// A catch-up round ended; `touchedSince` ids were touched by the feed meanwhile.
        case caughtUp(touchedSince: Int)
        /// The swap transaction committed.
        case swapped
        /// The swap hit the lock timeout and rolled back.
        case swapBlocked
        /// The new cache is loaded (or there is no cache to load).
        case loaded
        /// The new cache is installed.
        case installed
        /// A step failed.
        case failed(String)
        /// The feed restarted its session: recorded touches may be incomplete (a batch whose COMMIT outcome was
        /// unknown), and the restarted feed reloads its cache from the table anyway.
        case feedRestarted
    }

    /// What to do next.
    public enum Action: Sendable, Hashable {
        /// Worker: create the side table, read the id range.
        case prepare
        /// Worker: fill ids in `[lower, upper)`.
        case fill(lower: Int64, upper: Int64)
        /// Worker: indexes, constraints, owner, grants, ANALYZE.
        case createIndexes
        /// Worker: recompute the ids touched so far into the side table.
        case catchUp
        /// Feed, between batches: recompute the last touched ids and swap, in one transaction.
        case swap
        /// Worker: drop the old table, load the new cache off to the side.
        case contractAndLoad
        /// Feed, between batches: replay missed batches onto the new cache and swap it in.
        case installCache
        /// Done.
        case finish
        /// Worker: drop what the rebuild left behind; the rebuild failed for this reason.
        case abort(String)
        /// Nothing to do for this event (it does not apply in the current state).
        case ignore
    }

    /// The configuration.
    public let configuration: Configuration
    /// Where the rebuild stands.
    public private(set) var state: State = .idle
    /// Rows written to the side table.
    public private(set) var rowsDone: Int64 = 0
    /// Rows expected (the live table's count at the start); `nil` when unknown.
    public private(set) var rowsTotal: Int64?
    /// Swap attempts made.
    public private(set) var swapAttempts = 0
    /// The new table is live (the swap committed).
    public private(set) var hasSwapped = false
    /// The feed restarted after the swap, so its own bootstrap loaded the new table into the cache.
    private var cacheReloadedByFeed = false

    /// Creates an idle machine.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// The operator-facing phase; `nil` when no rebuild runs.
    public var phase: RebuildProgress.Phase? {
        switch state {
        case .idle, .finished, .failed: nil
        case .preparing, .filling, .indexing: .building
        case .catchingUp: .catchingUp
        case .swapping: .swapping
        case .contracting, .installingCache: .loadingCache
        }
    }

    /// Whether the machine is done (finished or failed).
    public var isDone: Bool {
        switch state {
        case .finished, .failed: true
        default: false
        }
    }

    /// Accepts an event; returns what to do.
    public mutating func handle(_ event: Event) -> Action {
        switch (state, event) {
        case (.idle, .start):
            state = .preparing
            return .prepare

        case (.preparing, .prepared(let lowest, let highest, let expected)):
            rowsTotal = expected
            guard let lowest, let highest, lowest <= highest else {
                state = .indexing
                return .createIndexes
            }
            let end = highest == .max ? highest : highest + 1
            return nextChunk(from: lowest, end: end)

        case (.filling(let next, let end), .filled(let rows)):
            rowsDone += max(0, rows)
            if let total = rowsTotal, rowsDone > total { rowsTotal = rowsDone }
            let upper = chunkEnd(next, end)
            guard upper < end else {
                state = .indexing
                return .createIndexes
            }
            return nextChunk(from: upper, end: end)

        case (.indexing, .indexed):
            state = .catchingUp(round: 0)
            return .catchUp

        case (.catchingUp(let round), .caughtUp(let touchedSince)):
            let done = round + 1
            if touchedSince <= configuration.swapThreshold || done >= configuration.maximumCatchUpRounds {
                state = .swapping(attempt: 1)
                swapAttempts = 1
                return .swap
            }
            state = .catchingUp(round: done)
            return .catchUp

        case (.swapping(let attempt), .swapBlocked):
            guard attempt < configuration.maximumSwapAttempts else {
                return fail("the swap could not lock explore.listings_projection within the lock timeout in "
                    + "\(attempt) attempts (long-running readers?); the live table is unchanged")
            }
            state = .swapping(attempt: attempt + 1)
            swapAttempts = attempt + 1
            return .swap

        case (.swapping, .swapped):
            hasSwapped = true
            state = .contracting
            return .contractAndLoad

        case (.contracting, .loaded):
            if cacheReloadedByFeed {
                state = .finished
                return .finish
            }
            state = .installingCache
            return .installCache

        case (.installingCache, .installed):
            state = .finished
            return .finish

        case (.contracting, .feedRestarted):
            cacheReloadedByFeed = true
            return .ignore

        case (.installingCache, .feedRestarted):
            state = .finished
            return .finish

        case (.preparing, .feedRestarted), (.filling, .feedRestarted), (.indexing, .feedRestarted),
             (.catchingUp, .feedRestarted), (.swapping, .feedRestarted):
            return fail("the feed restarted during the rebuild, so changes applied meanwhile may not be known; "
                + "the live table is unchanged; retry the rebuild")

        case (.idle, .failed), (.finished, _), (.failed, _):
            return .ignore

        case (_, .failed(let reason)):
            return fail(reason)

        default:
            return .ignore
        }
    }

    private mutating func fail(_ reason: String) -> Action {
        state = .failed(reason)
        return .abort(reason)
    }

    private func chunkEnd(_ lower: Int64, _ end: Int64) -> Int64 {
        let (sum, overflow) = lower.addingReportingOverflow(configuration.chunkSize)
        return overflow ? end : min(sum, end)
    }

    private mutating func nextChunk(from lower: Int64, end: Int64) -> Action {
        state = .filling(next: lower, end: end)
        return .fill(lower: lower, upper: chunkEnd(lower, end))
    }
}
