import ExploreQuery
import ExploreServer
import ExploreWire

/// The server's view of the cache: searches go to the index, `STATS` adds the projector's position.
struct ProjectedBackend: SearchBackend {
    let index: ExploreIndex
    let projector: ProjectorHandle

    func search(_ query: SearchQuery) throws(QueryError) -> SearchResult { try index.search(query) }

    func rows(ids: [ListingID]) -> [ExploreListing] { index.rows(ids: ids) }

    /// Listing count and memory of the cache, and the checkpoint's applied-change count the cache reflects.
    /// The lag is not reported: the projector does not measure it yet.
    func statistics() -> BackendStatistics {
        let status = projector.status
        return BackendStatistics(
            listingCount: index.count, memoryBytes: index.memoryBytes, feedLagMicroseconds: nil,
            lastAppliedChange: status.isBootstrapped ? UInt64(max(0, status.appliedChanges)) : nil,
            rebuild: status.rebuild.map { progress in
                RebuildStatus(phase: progress.phase.rawValue, rowsDone: UInt64(max(0, progress.rowsDone)),
                              rowsTotal: progress.rowsTotal.map { UInt64(max(0, $0)) },
                              elapsedMicroseconds: UInt64(max(0, progress.elapsedSeconds * 1e6)))
            })
    }
}
