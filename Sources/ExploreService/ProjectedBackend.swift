import ExploreQuery
import ExploreServer
import ExploreWire

/// The server's view of the cache: searches go to the index, `STATS` adds the projector's position.
struct ProjectedBackend: SearchBackend {
    let index: ExploreIndex
    let projector: ProjectorHandle

    func search(_ query: SearchQuery) throws(QueryError) -> SearchResult { try index.search(query) }

    func rows(ids: [ListingID]) -> [ExploreListing] { index.rows(ids: ids) }

    /// Listing count and memory of the cache, the checkpoint's applied-change count the cache reflects, and the
    /// feed's lag when it measures one (the Kafka feed does; the outbox feed does not yet).
    func statistics() -> BackendStatistics {
        let status = projector.status
        return BackendStatistics(
            listingCount: index.count, memoryBytes: index.memoryBytes,
            feedLagMicroseconds: status.lagMilliseconds.map { UInt64(max(0, $0) * 1_000) },
            lastAppliedChange: status.isBootstrapped ? UInt64(max(0, status.appliedChanges)) : nil)
    }
}
