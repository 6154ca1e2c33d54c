/// The live in-memory explore cache: many concurrent readers, one writer applying change batches.
///
/// A reader always sees a consistent state: a batch is visible entirely or not at all. A full rebuild is built
/// off to the side as an ``ExploreStore`` and swapped in with ``replace(with:)``.
public final class ExploreIndex: Sendable {
    /// Creates an empty index, or one serving `store`.
    public init(store: ExploreStore = ExploreStore()) { fatalError("skeleton") }

    /// Runs a search against the current state.
    /// - Throws: ``QueryError`` for an invalid query; never returns a silent empty result for one.
    public func search(_ query: SearchQuery) throws(QueryError) -> SearchResult { fatalError("skeleton") }

    /// Rows by id, in the order asked; ids not in the read model are skipped.
    public func rows(ids: [ListingID]) -> [ExploreListing] { fatalError("skeleton") }

    /// Applies a batch atomically. Only one writer may call this at a time.
    public func apply(_ batch: ListingChangeBatch) { fatalError("skeleton") }

    /// Swaps in a store built off to the side (a full rebuild).
    public func replace(with store: ExploreStore) { fatalError("skeleton") }

    /// Number of listings currently served.
    public var count: Int { fatalError("skeleton") }

    /// Bytes held by the current store (columns, indexes and strings), measured from its buffers.
    public var memoryBytes: Int { fatalError("skeleton") }
}

/// The columnar store and its indexes; not thread-safe on its own, owned by an ``ExploreIndex`` once served.
public final class ExploreStore {
    /// An empty store.
    public init() { fatalError("skeleton") }

    /// Bulk-loads rows (the rebuild path); later rows with the same id replace earlier ones.
    public init<Rows: Sequence>(bulk rows: Rows) where Rows.Element == ExploreListing { fatalError("skeleton") }
}
