import DemoData
import ExploreClient
@testable import ExploreMetrics
import ExploreQuery
import ExploreServer
import ExploreWire
import Foundation
import Metrics
import Projector
import Testing

/// A readiness flag the tests flip.
final class ReadinessBox: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String? = "loading the cache"
    func set(_ value: String?) { lock.withLock { reason = value } }
    func get() -> String? { lock.withLock { reason } }
}

@Suite("Operations HTTP port: /metrics, /healthz, /readyz", .serialized, .timeLimit(.minutes(2)))
struct OperationsServerTests {
    /// Runs `body` with an operations server on a free port of 127.0.0.1, then shuts it down.
    func withOperations<T>(exporter: MetricsExporter, readiness: ReadinessBox,
                           _ body: (OperationsServer) async throws -> T) async throws -> T {
        let endpoint = OperationsEndpoint(readiness: { readiness.get() }, scrape: { exporter.render() })
        let server = try await OperationsServer.start(host: "127.0.0.1", port: 0, endpoint: endpoint)
        do {
            let result = try await body(server)
            await server.shutdown()
            return result
        } catch {
            await server.shutdown()
            throw error
        }
    }

    @Test("/healthz is 200, /readyz follows readiness, unknown paths 404, other methods 405")
    func probes() async throws {
        let readiness = ReadinessBox()
        try await withOperations(exporter: MetricsExporter(), readiness: readiness) { server in
            let health = try await HTTPTestClient.request("/healthz", port: server.port)
            #expect(health.status == 200 && health.body == "ok\n")
            let notReady = try await HTTPTestClient.request("/readyz", port: server.port)
            #expect(notReady.status == 503)
            #expect(notReady.body.contains("loading the cache"))
            readiness.set(nil)
            let ready = try await HTTPTestClient.request("/readyz?verbose=1", port: server.port)
            #expect(ready.status == 200 && ready.body == "ready\n")
            readiness.set("shutting down")
            #expect(try await HTTPTestClient.request("/readyz", port: server.port).status == 503)
            #expect(try await HTTPTestClient.request("/nope", port: server.port).status == 404)
            #expect(try await HTTPTestClient.request("/", port: server.port).status == 404)
            let post = try await HTTPTestClient.request("POST", "/metrics", port: server.port)
            #expect(post.status == 405)
            #expect(post.headers["allow"] == "GET, HEAD")
            let head = try await HTTPTestClient.request("HEAD", "/healthz", port: server.port)
            #expect(head.status == 200 && head.body.isEmpty)
        }
    }

    @Test("/metrics renders the feed metrics in Prometheus text")
    func feedMetrics() async throws {
        let exporter = MetricsExporter()
        let metrics = FeedMetrics(factory: exporter.factory)
        var status = FeedStatus()
        status.isBootstrapped = true
        status.isConnected = true
        status.appliedChanges = 100
        status.batches = 2
        status.recordBatch(database: .milliseconds(1_500), cache: .milliseconds(250))
        status.recordBatch(database: .milliseconds(500), cache: .milliseconds(250))
        status.pendingChanges = 7
        status.lagMilliseconds = 12.5
        metrics.update(status: status, cache: CacheFigures(listings: 2_000, memoryBytes: 65_536, relayouts: 1,
                                                           rowsOutOfPlace: 90))
        status.appliedChanges = 130
        status.recordBatch(database: .milliseconds(1_000), cache: .milliseconds(125))
        status.recordBatch(database: .seconds(0), cache: .milliseconds(125))
        status.rejectedEvents = 2
        status.rebuild = RebuildProgress(phase: .building, rowsDone: 10, rowsTotal: 40, elapsedSeconds: 1)
        metrics.update(status: status, cache: CacheFigures(listings: 2_001, memoryBytes: 65_536, relayouts: 3,
                                                           rowsOutOfPlace: 12))
        try await withOperations(exporter: exporter, readiness: ReadinessBox()) { server in
            let answer = try await HTTPTestClient.request("/metrics", port: server.port)
            #expect(answer.status == 200)
            #expect(answer.headers["content-type"] == OperationsEndpoint.prometheusContentType)
            let text = answer.body
            #expect(text.sample("explore_feed_applied_changes_total") == 130)
            #expect(text.sample("explore_feed_batches_total") == 6)
            #expect(text.sample("explore_feed_rejected_events_total") == 2)
            #expect(text.sample("explore_feed_failures_total") == 0)
            #expect(text.sample("explore_feed_database_seconds_total") == 3)
            #expect(text.sample("explore_feed_cache_seconds_total") == 0.75)
            #expect(text.sample("explore_feed_pending_changes") == 7)
            #expect(text.sample("explore_feed_lag_milliseconds") == 12.5)
            #expect(text.sample("explore_feed_connected") == 1)
            #expect(text.sample("explore_cache_bootstrapped") == 1)
            #expect(text.sample("explore_cache_listings") == 2_001)
            #expect(text.sample("explore_cache_relayouts_total") == 3)
            #expect(text.sample("explore_cache_rows_out_of_place") == 12)
            #expect(text.sample("explore_rebuild_in_progress") == 1)
            #expect(text.sample("explore_rebuild_rows_done") == 10)
            #expect(text.sample("explore_rebuild_rows_total") == 40)
        }
    }

    @Test("a restarted driver's totals start again from zero and still only add")
    func counterGrowth() {
        #expect(FeedMetrics.growth(from: nil, to: 5, restartCounts: true) == 5)
        #expect(FeedMetrics.growth(from: 5, to: 9, restartCounts: true) == 4)
        #expect(FeedMetrics.growth(from: 9, to: 2, restartCounts: true) == 2)
        #expect(FeedMetrics.growth(from: 9, to: 2, restartCounts: false) == 0)
        #expect(FeedMetrics.growth(from: nil, to: 1.5) == 1.5)
        #expect(FeedMetrics.growth(from: 1.5, to: 2.25) == 0.75)
        #expect(FeedMetrics.growth(from: 2.25, to: 0.5) == 0.5)
    }

    @Test("the protocol server's requests are counted by opcode and result, with latency histograms")
    func requestMetrics() async throws {
        let exporter = MetricsExporter()
        let dataset = DemoDataset(listings: 500, seed: 3)
        let index = ExploreIndex(store: ExploreStore(bulk: dataset.exploreRows()))
        var configuration = ExploreServerConfiguration(host: "127.0.0.1", port: 0)
        configuration.metricsFactory = exporter.factory
        let server = try await ExploreServer.start(configuration: configuration, backend: index)
        do {
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            for _ in 0..<5 { _ = try await client.search(SearchQuery()) }
            var invalid = SearchQuery()
            invalid.limit = 0
            await #expect(throws: ExploreClientError.self) { _ = try await client.search(invalid) }
            _ = try await client.stats()
            await #expect(throws: ExploreClientError.self) { _ = try await client.rebuild() }
            try await withOperations(exporter: exporter, readiness: ReadinessBox()) { operations in
                let text = try await HTTPTestClient.request("/metrics", port: operations.port).body
                #expect(text.sample(#"explore_requests_total{opcode="search",result="ok"}"#) == 5)
                #expect(text.sample(#"explore_requests_total{opcode="search",result="limit_out_of_range"}"#) == 1)
                #expect(text.sample(#"explore_requests_total{opcode="stats",result="ok"}"#) == 1)
                #expect(text.sample(#"explore_requests_total{opcode="rebuild",result="admin_unavailable"}"#) == 1)
                #expect(text.sample(#"explore_request_duration_seconds_count{opcode="search"}"#) == 6)
                #expect(text.sample("explore_connections_open") == 1)
            }
            await client.close()
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }
}
