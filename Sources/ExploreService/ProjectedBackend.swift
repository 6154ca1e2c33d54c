import ExploreQuery
import ExploreServer
import ExploreWire
import Projector

/// The server's view of the cache: searches go to the index, `STATS` adds the projector's position, lag and
/// state.
struct ProjectedBackend: SearchBackend {
    let index: ExploreIndex
    let projector: ProjectorHandle

    func search(_ query: SearchQuery) throws(QueryError) -> SearchResult { try index.search(query) }

    func rows(ids: [ListingID]) -> [ExploreListing] { index.rows(ids: ids) }

    /// Listing count and memory of the cache, the checkpoint's applied-change count the cache reflects, the
    /// feed's lag (the age of the oldest change not applied yet) and its state.
    func statistics() -> BackendStatistics {
        let status = projector.status
        return BackendStatistics(
            listingCount: index.count, memoryBytes: index.memoryBytes,
            feedLagMicroseconds: status.lagMilliseconds.map { UInt64(max(0, ($0 * 1_000).rounded())) },
            lastAppliedChange: status.isBootstrapped ? UInt64(max(0, status.appliedChanges)) : nil,
            feed: FeedReport(status))
    }
}

extension FeedReport {
    /// The wire form of a feed's status.
    init(_ status: FeedStatus) {
        self.init(
            isConnected: status.isConnected, isBootstrapped: status.isBootstrapped,
            batches: UInt64(max(0, status.batches)), failures: UInt64(max(0, status.failures)),
            rejectedEvents: UInt64(max(0, status.rejectedEvents)),
            pendingChanges: status.pendingChanges.map { UInt64(max(0, $0)) },
            lastError: status.lastError,
            rebuild: status.rebuild.map { progress in
                RebuildStatus(
                    phase: RebuildStatus.Phase(progress.phase),
                    rowsDone: UInt64(max(0, progress.rowsDone)),
                    rowsTotal: progress.rowsTotal.map { UInt64(max(0, $0)) },
                    elapsedMicroseconds: UInt64(max(0, (progress.elapsedSeconds * 1e6).rounded())))
            })
    }
}

extension RebuildStatus.Phase {
    /// The wire phase of a rebuild phase.
    init(_ phase: RebuildProgress.Phase) {
        switch phase {
        case .building: self = .building
        case .catchingUp: self = .catchingUp
        case .swapping: self = .swapping
        case .loadingCache: self = .loadingCache
        }
    }
}
