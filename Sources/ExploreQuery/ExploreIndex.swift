import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The live in-memory explore cache: many concurrent readers, one writer applying change batches.
///
/// A reader always sees a consistent state: a batch is visible entirely or not at all. A full rebuild is built
/// off to the side as an ``ExploreStore`` and swapped in with ``replace(with:)``.
///
/// Concurrency design: one store guarded by a readers-writer lock. Searches take the read lock and run in
/// parallel; ``apply(_:)`` takes the write lock for the whole batch, so a reader sees a batch entirely or not
/// at all. The alternative (copy-on-write snapshots) would double memory for a million rows or need
/// persistent structures that slow every query; batches are applied in microseconds per row, so holding
/// the write lock for one batch is short, and a large batch is applied on all cores (readers wait for it
/// either way). On Linux the lock prefers writers so a steady read load cannot starve the projector.
public final class ExploreIndex: Sendable {
    private let state: LockedStore
    private let relayout: Mutex<Relayout>
    /// Rows out of place, as a fraction of the rows served, at which the store is laid out again.
    private let relayoutThreshold: Double

    /// Creates an empty index, or one serving `store`.
    /// - Parameter relayoutThreshold: the share of rows out of place (placed since the bulk load in a slot their
    ///   own area did not free, see ``FreeSlots``) at which the index lays its store out again in the background
    ///   (see ``apply(_:)``); `nil` never does.
    public init(store: ExploreStore = ExploreStore(), relayoutThreshold: Double? = 0.125) {
        state = LockedStore(store)
        relayout = Mutex(Relayout())
        self.relayoutThreshold = relayoutThreshold ?? .infinity
    }

    /// Runs a search against the current state.
    ///
    /// Semantics: price filters match when `[priceFrom ?? priceTo, priceTo ?? priceFrom]` overlaps
    /// `[priceMin, priceMax]`; rows with neither end never match a price filter. Both price orders sort by
    /// `priceFrom` (falling back to `priceTo` when only that end is known), descending or ascending, with
    /// unpriced rows last in both directions; every order breaks ties by ascending listing id. Facet counts
    /// on a field apply every filter except that field's own; a listing counts in every price bucket its
    /// range overlaps. Cursors encode the sort, the last row's key and id and a fingerprint of filter and
    /// sort, so they stay exact while rows change and are refused (``QueryError/Code/cursorMismatch``) for
    /// another filter or sort.
    /// - Throws: ``QueryError`` for an invalid query; never returns a silent empty result for one.
    public func search(_ query: SearchQuery) throws(QueryError) -> SearchResult {
        let plan = try query.validated()
        return state.read { $0.search(plan) }
    }

    /// Rows by id, in the order asked; ids not in the read model are skipped.
    public func rows(ids: [ListingID]) -> [ExploreListing] {
        state.read { store in ids.compactMap { store.row(id: $0) } }
    }

    /// The ids of every listing served, ascending.
    public func listingIDs() -> [ListingID] {
        state.read { $0.slotByID.ids }.sorted()  // sorted outside the lock
    }

    /// Applies a batch atomically. Only one writer may call this at a time.
    ///
    /// Storage that must be rewritten or grown first (see `ExploreStore.renewal()`) is copied under the read
    /// lock and moved in under the write lock with the batch. Why: a string arena's rewrite copies every live
    /// title or image URL, and growing the slot-indexed columns copies them all (20-50 ms each at a million
    /// rows); under the write lock that stalled every search. As this is the only writer, the store cannot
    /// change between the two locks unless a rebuild swaps in another store, and then the copies are dropped.
    ///
    /// Rows added over time land in slots of their city's newer runs or freed by other areas, and each such row
    /// widens the blocks its city's and area's searches read (after two million changes at a million rows,
    /// searches took 1.45 times as long as on a fresh load of the same rows). Once such rows reach
    /// `relayoutThreshold` of the store, a background thread lays the store out again the way a bulk load does:
    /// it copies the rows a slice at a time under the read lock, bulk-loads them into a new store, and applies
    /// to it every batch applied since it started copying (each change carries its whole row or a delete, so
    /// a row copied before or after a batch ends the same). The writer swaps the new store in at its next batch
    /// once the thread has caught up, so searches and the feed go on throughout.
    public func apply(_ batch: ListingChangeBatch) {
        var (generation, (renewal, due)) = state.readWithGeneration { store in
            (store.renewal(), Double(store.rowsOutOfPlace) >= relayoutThreshold * Double(max(store.count, 1_000)))
        }
        state.write { store, current in
            if current == generation { store.install(&renewal) }
            store.apply(batch)
        }
        let step = relayout.withLock { $0.step(after: batch, due: due, generation: generation) }
        switch step {
        case .none:
            break
        case .start(let epoch):
            // Its own thread: on Linux, Dispatch's global queues are the Swift concurrency pool's threads.
            DetachedThread { [self] in buildRelayout(epoch: epoch) }.start()
        case .swap(let built, let startGeneration):
            let store = built.store
            store.apply(batch)
            if let old = state.swap(store, ifGeneration: startGeneration) {
                relayout.withLock { $0.completed += 1 }
                // Freeing a million rows' buffers takes tens of milliseconds: not on the writer's thread.
                let retired = Relayout.Handoff(store: old)
                DetachedThread { withExtendedLifetime(retired) {} }.start()
            }
        }
    }

    /// The background half of a relayout (see ``apply(_:)``): copy, bulk-load, catch up, hand over.
    private func buildRelayout(epoch: UInt64) {
        var rows: [ExploreListing] = []
        var start = 0
        while true {
            let (slice, slotCount) = state.read { store in
                (store.liveRows(inSlots: start..<start + Self.relayoutSlice), store.slotCount)
            }
            rows += slice
            start += Self.relayoutSlice
            if start >= slotCount { break }
        }
        let store = ExploreStore(bulk: rows)
        rows = []
        var replayed = 0
        while true {
            let pending = relayout.withLock {
                $0.catchUp(epoch: epoch, store: Relayout.Handoff(store: store), replayed: replayed)
            }
            guard let pending, !pending.isEmpty else { return }
            for batch in pending { store.apply(batch) }
            replayed += pending.count
        }
    }

    /// Slots copied per read-lock hold while a relayout copies the rows. A waiting writer holds new readers back
    /// (the lock prefers writers), so a search can wait for one slice: 16,384 slots, about 16 ms of building rows
    /// and strings, let searches wait up to 60 ms during relayouts; 2,048 keep each hold to a couple of
    /// milliseconds.
    private static let relayoutSlice = 2_048

    /// Rows of the current store placed out of their area (see ``apply(_:)``).
    public var rowsOutOfPlace: Int { state.read { $0.rowsOutOfPlace } }

    /// Number of relayouts swapped in since this index was created (tests and statistics).
    public var relayoutsCompleted: Int { relayout.withLock { $0.completed } }

    /// Swaps in a store built off to the side (a full rebuild), after applying to it `batches` (those applied to
    /// the live store while it was loaded); a relayout in progress is dropped.
    public func replace(with store: ExploreStore, replaying batches: [ListingChangeBatch] = []) {
        for batch in batches { store.apply(batch) }
        relayout.withLock { $0.cancel() }
        state.swap(store)
    }

    /// Number of listings currently served.
    public var count: Int { state.read { $0.count } }

    /// Bytes held by the current store (columns, indexes and strings), measured from its buffers.
    public var memoryBytes: Int { state.read { $0.memoryBytes } }
}

/// The writer's and the relayout thread's shared view of a relayout (see ``ExploreIndex/apply(_:)``): a pure
/// state machine; the index performs the steps it returns.
private struct Relayout {
    /// A store passed between the relayout thread and the writer.
    ///
    /// `@unchecked Sendable` is sound because a store in a handoff is only used by one thread at a time: the
    /// relayout thread until it hands the store over (and never after), then the writer.
    struct Handoff: @unchecked Sendable {
        let store: ExploreStore
    }

    enum Phase {
        case idle
        /// The thread is copying, loading or catching up; every batch applied since it started is in `log`.
        case building
        /// The thread is done: the store has every batch of `log` applied.
        case built(Handoff)
    }

    enum Step {
        case none
        /// Start the relayout thread for relayout `epoch`.
        case start(epoch: UInt64)
        /// Apply the batch just applied to the live store to the built store too, and swap it in if the live
        /// store is still of `generation`.
        case swap(Handoff, generation: UInt64)
    }

    private var phase = Phase.idle
    private var log: [ListingChangeBatch] = []
    /// The generation of the live store when the relayout started (a rebuild swapped in since makes it moot).
    private var generation: UInt64 = 0
    /// Numbers the relayouts, so a thread whose relayout was cancelled never touches a later one.
    private var epoch: UInt64 = 0
    /// Relayouts swapped in.
    var completed = 0

    /// Called by the writer after it applied `batch` to a store of `generation`.
    mutating func step(after batch: ListingChangeBatch, due: Bool, generation current: UInt64) -> Step {
        switch phase {
        case .idle:
            guard due else { return .none }
            // `batch` is in the live store before the thread starts copying, so it is not logged.
            phase = .building
            generation = current
            epoch &+= 1
            return .start(epoch: epoch)
        case .building:
            log.append(batch)
            return .none
        case .built(let store):
            // The thread handed over with the whole log applied, and this is the first batch since.
            phase = .idle
            log = []
            return .swap(store, generation: generation)
        }
    }

    /// Called by the thread of relayout `epoch` with `replayed` batches of the log applied: the batches it still
    /// has to apply, an empty list once it has handed the store over, or nil when its relayout was cancelled.
    mutating func catchUp(epoch thread: UInt64, store: Handoff, replayed: Int) -> [ListingChangeBatch]? {
        guard case .building = phase, thread == epoch else { return nil }
        if replayed < log.count { return Array(log[replayed...]) }
        phase = .built(store)
        return []
    }

    /// Drops the relayout in progress (a rebuild replaces the store).
    mutating func cancel() {
        phase = .idle
        log = []
    }
}

/// The store behind a pthread readers-writer lock.
///
/// `@unchecked Sendable` is sound because `store` is only touched inside `read` (shared lock, and the store's
/// read paths do not mutate it) or `write`/`swap` (exclusive lock).
private final class LockedStore: @unchecked Sendable {
    private var store: ExploreStore
    /// Counts the stores swapped in, so a writer can tell whether the store it read is still the one it writes.
    private var generation: UInt64 = 0
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init(_ store: ExploreStore) {
        self.store = store
        lock = .allocate(capacity: 1)
        #if canImport(Glibc)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
        #else
        pthread_rwlock_init(lock, nil)
        #endif
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func read<T>(_ body: (ExploreStore) -> T) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body(store)
    }

    /// `read`, with the generation of the store read (see `write`).
    func readWithGeneration<T>(_ body: (ExploreStore) -> T) -> (generation: UInt64, value: T) {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return (generation, body(store))
    }

    func write(_ body: (ExploreStore, _ generation: UInt64) -> Void) {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        body(store, generation)
    }

    /// Swaps in `newStore`, if given only while the store is still of `expected` generation; returns the store
    /// replaced, which the caller releases outside the lock so readers do not wait for its deallocation.
    @discardableResult
    func swap(_ newStore: ExploreStore, ifGeneration expected: UInt64? = nil) -> ExploreStore? {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        guard expected.map({ $0 == generation }) ?? true else { return nil }
        let old = store
        store = newStore
        generation &+= 1
        return old
    }
}
