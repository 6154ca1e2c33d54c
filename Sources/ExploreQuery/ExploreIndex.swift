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

    /// Creates an empty index, or one serving `store`.
    public init(store: ExploreStore = ExploreStore()) {
        state = LockedStore(store)
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
        state.read { Array($0.slotByID.keys) }.sorted()  // sorted outside the lock
    }

    /// Applies a batch atomically. Only one writer may call this at a time.
    ///
    /// Storage that must be rewritten or grown first (see `ExploreStore.renewal()`) is copied under the read
    /// lock and moved in under the write lock with the batch. Why: a string arena's rewrite copies every live
    /// title or image URL, and growing the slot-indexed columns copies them all (20-50 ms each at a million
    /// rows); under the write lock that stalled every search. As this is the only writer, the store cannot
    /// change between the two locks unless a rebuild swaps in another store, and then the copies are dropped.
    public func apply(_ batch: ListingChangeBatch) {
        var (generation, renewal) = state.readWithGeneration { $0.renewal() }
        state.write { store, current in
            if current == generation { store.install(&renewal) }
            store.apply(batch)
        }
    }

    /// Swaps in a store built off to the side (a full rebuild).
    public func replace(with store: ExploreStore) {
        state.swap(store)
    }

    /// Number of listings currently served.
    public var count: Int { state.read { $0.count } }

    /// Bytes held by the current store (columns, indexes and strings), measured from its buffers.
    public var memoryBytes: Int { state.read { $0.memoryBytes } }
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

    func swap(_ newStore: ExploreStore) {
        pthread_rwlock_wrlock(lock)
        let old = store
        store = newStore
        generation &+= 1
        pthread_rwlock_unlock(lock)
        // The old store is released outside the lock so readers do not wait for its deallocation.
        _ = old
    }
}
