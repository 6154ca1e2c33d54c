import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreWire
import Testing

/// A backend with a change feed: `STATS` carries its lag, position and feed report.
struct FeedBackend: SearchBackend {
    static let feed = FeedReport(isConnected: true, isBootstrapped: true, batches: 3, failures: 1, rejectedEvents: 0,
                                 pendingChanges: 4, lastError: nil,
                                 rebuild: RebuildStatus(phase: .catchingUp, rowsDone: 10, rowsTotal: 20,
                                                        elapsedMicroseconds: 1_000))
    let inner = ReferenceBackend(rows: demoRows)

    func search(_ query: SearchQuery) throws(QueryError) -> SearchResult { try inner.search(query) }
    func rows(ids: [ListingID]) -> [ExploreListing] { inner.rows(ids: ids) }
    func statistics() -> BackendStatistics {
        var statistics = inner.statistics()
        statistics.feedLagMicroseconds = 1_500
        statistics.lastAppliedChange = 77
        statistics.feed = Self.feed
        return statistics
    }
}

@Suite("STATS across protocol versions", .serialized, .timeLimit(.minutes(2)))
struct StatsVersionTests {
    @Test("a version 1 client gets the version 1 layout; a version 2 client gets the feed report")
    func versions() async throws {
        try await withServer(backend: FeedBackend()) { server in
            for (maximum, expectFeed) in [(UInt8(1), false), (2, true)] {
                let connection = try await RawConnection.connect(port: server.port)
                let bytes = RawConnection.helloBytes(minimumVersion: 1, maximumVersion: maximum)
                    + RawConnection.frame(.stats, id: 5)
                let (responses, closed) = try await connection.exchange(bytes, expecting: 2)
                #expect(!closed)
                guard responses.count == 2, case .helloAccepted(let accepted) = responses[0].1,
                      case .stats(let stats) = responses[1].1 else {
                    Issue.record("unexpected answers \(responses)")
                    continue
                }
                #expect(accepted.version == maximum)
                #expect(stats.protocolVersion == maximum)
                #expect(stats.feedLagMicroseconds == 1_500)
                #expect(stats.lastAppliedChange == 77)
                #expect(stats.feed == (expectFeed ? FeedBackend.feed : nil))
            }
        }
    }

    @Test("the Swift client negotiates version 3 and reads the feed report")
    func client() async throws {
        try await withServer(backend: FeedBackend()) { server in
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            let stats = try await client.stats()
            #expect(client.serverInfo.version == 3)
            #expect(stats.feed == FeedBackend.feed)
            await client.close()
        }
    }

    @Test("VERIFY_RESULT carries the pending count from version 3 on, and only there")
    func verifyPending() async throws {
        var configuration = ExploreServerConfiguration(host: "127.0.0.1", port: 0)
        configuration.adminToken = "token"
        try await withServer(configuration, admin: RecordingAdmin()) { server in
            for maximum in WireProtocol.supportedVersions {
                let connection = try await RawConnection.connect(port: server.port)
                let bytes = RawConnection.helloBytes(minimumVersion: 1, maximumVersion: maximum, adminToken: "token")
                    + RawConnection.frame(.verify, id: 9)
                let (responses, _) = try await connection.exchange(bytes, expecting: 2)
                guard responses.count == 2, case .verified(let report) = responses[1].1 else {
                    Issue.record("unexpected answers \(responses)")
                    continue
                }
                #expect(report.pendingCount == (maximum >= 3 ? RecordingAdmin.verifyReport.pendingCount : nil))
                #expect(report.mismatchCount == RecordingAdmin.verifyReport.mismatchCount)
            }
        }
    }
}
