public import ExploreQuery
public import ExploreWire

/// What the server asks of the data it serves. ``ExploreIndex`` conforms; tests plug in small references.
public protocol SearchBackend: Sendable {
    /// Runs a search; throws ``QueryError`` for an invalid query.
    func search(_ query: SearchQuery) throws(QueryError) -> SearchResult
    /// Rows by id in the order asked; unknown ids skipped.
    func rows(ids: [ListingID]) -> [ExploreListing]
    /// Current figures for `STATS`.
    func statistics() -> BackendStatistics
}

/// The backend's part of `STATS`.
public struct BackendStatistics: Sendable, Hashable {
    public var listingCount: Int
    public var memoryBytes: Int
    /// Microseconds the served state trails the change feed; `nil` without a feed.
    public var feedLagMicroseconds: UInt64?
    /// Position of the last applied change; `nil` without a feed.
    public var lastAppliedChange: UInt64?
    /// The full rebuild in progress, if any.
    public var rebuild: RebuildStatus?

    public init(listingCount: Int, memoryBytes: Int, feedLagMicroseconds: UInt64? = nil,
                lastAppliedChange: UInt64? = nil, rebuild: RebuildStatus? = nil) {
        self.rebuild = rebuild
        self.listingCount = listingCount
        self.memoryBytes = memoryBytes
        self.feedLagMicroseconds = feedLagMicroseconds
        self.lastAppliedChange = lastAppliedChange
    }
}

extension ExploreIndex: SearchBackend {
    /// Listing count and memory of the served store; an index alone has no change feed.
    public func statistics() -> BackendStatistics {
        BackendStatistics(listingCount: count, memoryBytes: memoryBytes)
    }
}

/// The operator's `REBUILD` and `VERIFY`, injected into the server (the projector provides the real one).
public protocol AdminHandler: Sendable {
    /// Rebuilds the served state off to the side and swaps it in.
    func rebuild() async throws -> RebuildReport
    /// Compares the served state with its source.
    func verify() async throws -> VerifyReport
}
