import ExploreMetrics
import ExploreService
import Foundation

/// The operations port of `serve --metrics-listen`: Prometheus text on `/metrics`, `/healthz`, and `/readyz`
/// (as ``FeedReadiness`` says; not ready while stopping).
///
/// It starts before the service, so probes get answers (`/readyz` 503) while the cache is still loading, and
/// bootstraps the process's `MetricsSystem`, so the protocol server's request metrics land in its registry.
final class ServeOperations: @unchecked Sendable {
    // Safe: `service`, `alwaysReady`, `stopping` and `server` are read and written only while holding `lock`.
    private let lock = NSLock()
    private var service: ExploreService?
    private var alwaysReady = false
    private var stopping = false
    private let exporter: MetricsExporter
    private let feedMetrics: FeedMetrics
    private let readiness: FeedReadiness
    private var server: OperationsServer?

    private init(exporter: MetricsExporter, readiness: FeedReadiness) {
        self.exporter = exporter
        self.readiness = readiness
        feedMetrics = FeedMetrics(factory: exporter.factory)
    }

    /// Bootstraps the metrics system and binds `host:port`.
    static func start(host: String, port: Int, readiness: FeedReadiness) async throws(CommandFailure)
        -> ServeOperations
    {
        let exporter = MetricsExporter()
        exporter.bootstrapMetricsSystem()
        let operations = ServeOperations(exporter: exporter, readiness: readiness)
        let endpoint = OperationsEndpoint(
            readiness: { [operations] in operations.notReadyReason() },
            scrape: { [operations] in operations.scrape() })
        do {
            let server = try await OperationsServer.start(host: host, port: port, endpoint: endpoint)
            operations.lock.withLock { operations.server = server }
            print("metrics on http://\(host):\(server.port)/metrics (also /healthz, /readyz)")
            fflush(nil)
            return operations
        } catch {
            throw CommandFailure("cannot listen on \(host):\(port) for metrics: \(error)")
        }
    }

    /// From now on readiness and the feed metrics follow `service`.
    func attach(_ service: ExploreService) {
        lock.withLock { self.service = service }
    }

    /// Ready from now on (a service without a feed: `serve --demo`).
    func markAlwaysReady() {
        lock.withLock { alwaysReady = true }
    }

    /// Not ready from now on: the process is shutting down.
    func markStopping() {
        lock.withLock { stopping = true }
    }

    /// Closes the port.
    func shutdown() async {
        let server = lock.withLock { self.server }
        await server?.shutdown()
    }

    private func notReadyReason() -> String? {
        let (service, alwaysReady, stopping) = lock.withLock { (self.service, self.alwaysReady, self.stopping) }
        if stopping { return "shutting down" }
        if alwaysReady { return nil }
        // The service exists only once its cache is bootstrapped; a cache rebuild (a fresh driver loading a new
        // cache while searches use the old one) keeps it ready.
        guard let service else { return "loading the cache" }
        var status = service.projectorStatus
        status.isBootstrapped = true
        return readiness.notReadyReason(status)
    }

    private func scrape() -> [UInt8] {
        if let service = lock.withLock({ self.service }) {
            let index = service.index
            feedMetrics.update(status: service.projectorStatus, cache: CacheFigures(
                listings: index.count, memoryBytes: index.memoryBytes, relayouts: index.relayoutsCompleted,
                rowsOutOfPlace: index.rowsOutOfPlace))
        }
        return exporter.render()
    }
}
