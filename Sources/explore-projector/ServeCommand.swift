import ArgumentParser
import DemoData
import Dispatch
import ExploreMetrics
import ExploreQuery
import ExploreServer
import ExploreService
import ExploreWire
import Foundation
import Logging
import Projector

/// `explore-projector serve`: the Explore service over a PostgreSQL database (`--database-url`), or over a
/// generated in-memory data set (`--demo N`) to exercise the protocol without a database.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Runs the Explore service: the projector and the search server.",
        discussion: """
            With --database-url (or EXPLORE_POSTGRES_URL) the service builds the projection if it has never been \
            built, loads the cache from the projection table, follows the change outbox (LISTEN/NOTIFY plus \
            polling) and serves searches from the cache. With --feed kafka it follows a topic of Debezium (or \
            {"table", "id"}) change events instead, resuming from the offsets stored with the projection. \
            With --demo N it serves N generated listings instead. \
            SIGINT or SIGTERM stops it gracefully: the batch in flight is finished, then connections are drained.
            """)

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var feedOptions: FeedOptions
    @Option(help: "Serve N generated listings in memory instead of a database.") var demo: Int?
    @Option(help: "Seed of the generated data set (with --demo).") var seed: UInt64 = 1
    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).") var listen = "127.0.0.1:7700"
    @Option(help: "File holding the admin token enabling REBUILD and VERIFY; without it they are refused.")
    var adminTokenFile: String?
    @Option(help: "Changes arriving within this many milliseconds are applied as one batch.")
    var batchWindowMs = 5
    @Option(help: "Most distinct keys (listings, locations) in one batch; a larger backlog goes in several.")
    var batchMaxIds = 10_000
    @Option(help: ArgumentHelp(
        "PostgreSQL connections a large batch is applied on at once (1...16, default "
            + "\(ProjectorDriver.Configuration.defaultApplyConnections); outbox feed).",
        discussion: "A batch of 2,000 listings or more is split by listing, each part recomputed on a connection "
            + "of its own; 1 applies every batch on one connection."))
    var applyConnections: Int?
    @Option(help: "Milliseconds between outbox polls when no notification arrives.") var pollIntervalMs = 500
    @Option(help: "Filter field to switch off (e.g. bedrooms); repeatable.") var disableFilter: [String] = []
    @Option(help: "Listing type to switch off (development or existing); repeatable.") var disableType: [String] = []
    @Option(help: "Maximum connections.") var maxConnections = 1024
    @Option(help: "Idle timeout in seconds.") var idleTimeout: Int64 = 300
    @Option(help: "Serve /metrics (Prometheus text), /healthz and /readyz on this HOST:PORT; off by default.")
    var metricsListen: String?
    @Option(help: ArgumentHelp(
        "Seconds /readyz stays 200 after the feed loses its source (0...86400).",
        discussion: "Searches are answered from the cache meanwhile; a database restart disconnects every replica "
            + "at once, and turning them all unready would take search down. 0: unready at once."))
    var readyWhileDisconnected: Int = 60

    func validate() throws {
        if let demo {
            guard demo >= 0 else { throw ValidationError("--demo must be >= 0") }
            guard database.databaseURL == nil else {
                throw ValidationError("pass either --database-url or --demo, not both")
            }
            guard feedOptions.feed == .outbox else {
                throw ValidationError("--demo serves generated listings without a feed; drop --feed kafka")
            }
        }
        guard parseListenAddress(listen) != nil else {
            throw ValidationError("--listen must be HOST:PORT with a port in 0...65535, e.g. 127.0.0.1:7700")
        }
        if let metricsListen, parseListenAddress(metricsListen) == nil {
            throw ValidationError("--metrics-listen must be HOST:PORT, e.g. 127.0.0.1:9187")
        }
        guard (0...86_400).contains(readyWhileDisconnected) else {
            throw ValidationError("--ready-while-disconnected must be 0...86400 seconds")
        }
        // Upper bounds too: a window or poll interval of hours would leave changes unapplied that long, and an
        // idle timeout of 0 would close every connection at once.
        guard (0...60_000).contains(batchWindowMs) else {
            throw ValidationError("--batch-window-ms must be in 0...60000")
        }
        guard batchMaxIds >= 1 else { throw ValidationError("--batch-max-ids must be >= 1") }
        if let applyConnections, !(1...16).contains(applyConnections) {
            throw ValidationError("--apply-connections must be in 1...16")
        }
        if applyConnections != nil && feedOptions.feed == .kafka {
            throw ValidationError("--apply-connections is an outbox feed option; the kafka feed applies on one")
        }
        guard (1...60_000).contains(pollIntervalMs) else {
            throw ValidationError("--poll-interval-ms must be in 1...60000")
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be >= 1") }
        guard (1...86_400).contains(idleTimeout) else {
            throw ValidationError("--idle-timeout must be in 1...86400 seconds")
        }
        for name in disableFilter where FilterField(name: name) == nil {
            throw ValidationError("unknown filter \(name); known: \(FilterField.allCases.map(\.name).joined(separator: ", "))")
        }
        for name in disableType where ListingType(name: name) == nil {
            throw ValidationError("unknown listing type \(name)")
        }
    }

    func run() async throws {
        ServeLogging.bootstrap()
        do {
            let server = try serverConfiguration()
            if let demo {
                try await runDemo(listings: demo, server: server)
            } else {
                try await runDatabase(server: server)
            }
        } catch let failure as CommandFailure {
            printError("error: \(failure.description)")
            throw ExitCode.failure
        } catch let error as ExploreServiceError {
            printError("error: \(error.message)")
            throw ExitCode.failure
        }
    }

    /// The operations port, when `--metrics-listen` asks for one.
    private func startOperations() async throws(CommandFailure) -> ServeOperations? {
        guard let metricsListen, let address = parseListenAddress(metricsListen) else { return nil }
        return try await ServeOperations.start(
            host: address.host, port: address.port,
            readiness: FeedReadiness(disconnectedGrace: .seconds(readyWhileDisconnected)))
    }

    private func serverConfiguration() throws(CommandFailure) -> ExploreServerConfiguration {
        let address = parseListenAddress(listen)!
        var configuration = ExploreServerConfiguration(host: address.host, port: address.port)
        configuration.adminToken = try adminTokenFile.map { path throws(CommandFailure) in
            try readAdminToken(path: path)
        }
        configuration.maximumConnections = maxConnections
        configuration.idleTimeout = .seconds(idleTimeout)
        configuration.features = FeatureFlags(
            enabledFilters: Set(FilterField.allCases).subtracting(disableFilter.compactMap(FilterField.init(name:))),
            enabledListingTypes: Set(ListingType.allCases).subtracting(disableType.compactMap(ListingType.init(name:))))
        return configuration
    }

    private func runDatabase(server: ExploreServerConfiguration) async throws {
        let postgres = try database.configuration()
        var configuration = ExploreService.Configuration(
            postgres: postgres,
            batching: ChangeBatcher.Configuration(window: .milliseconds(batchWindowMs), maximumKeys: batchMaxIds),
            pollInterval: .milliseconds(pollIntervalMs), server: server)
        configuration.applyConnections = applyConnections
        if let kafka = try feedOptions.kafkaConfiguration() { configuration.feed = .kafka(kafka) }
        let operations = try await startOperations()
        let signals = ServeSignals(operations: operations)
        let service: ExploreService
        do {
            service = try await ExploreService.start(configuration: configuration)
        } catch {
            await operations?.shutdown()
            throw error
        }
        operations?.attach(service)
        signals.started { Task { await service.shutdown() } }
        print("serving \(service.index.count) listings from \(postgres.host):\(postgres.port)/\(postgres.database) "
            + "on \(server.host):\(service.port)")
        fflush(nil)  // stdout may be a pipe; the operator should see this line now, not at exit.
        await service.waitUntilClosed()
        await service.shutdown()
        await operations?.shutdown()
        withExtendedLifetime(signals) {}
        print("stopped")
    }

    private func runDemo(listings: Int, server configuration: ExploreServerConfiguration) async throws {
        let dataset = DemoDataset(listings: listings, seed: seed)
        let index = ExploreIndex(store: ExploreStore(bulk: dataset.exploreRows()))
        let operations = try await startOperations()
        let signals = ServeSignals(operations: operations)
        let server: ExploreServer
        do {
            server = try await ExploreServer.start(
                configuration: configuration, backend: index, admin: DemoAdmin(index: index, dataset: dataset))
        } catch {
            await operations?.shutdown()
            throw CommandFailure("cannot listen on \(configuration.host):\(configuration.port): \(error)")
        }
        operations?.markAlwaysReady()
        signals.started { Task { await server.shutdown() } }
        print("serving \(index.count) demo listings on \(configuration.host):\(server.port)")
        fflush(nil)
        await server.waitUntilClosed()
        await server.shutdown()
        await operations?.shutdown()
        withExtendedLifetime(signals) {}
        print("stopped")
    }
}

/// REBUILD and VERIFY for the demo: the source of truth is the generated data set.
final class DemoAdmin: AdminHandler {
    let index: ExploreIndex
    let dataset: DemoDataset
    /// The index allows one writer at a time; two REBUILDs from two connections take turns here.
    private let writerLock = NSLock()

    init(index: ExploreIndex, dataset: DemoDataset) {
        self.index = index
        self.dataset = dataset
    }

    /// Builds a fresh store off to the side (readers keep using the old one), then swaps it in.
    func rebuild() async throws -> RebuildReport {
        let start = DispatchTime.now()
        let (index, dataset, writerLock) = (index, dataset, writerLock)
        let count = await Self.offCooperativePool {
            let store = ExploreStore(bulk: dataset.exploreRows())
            return writerLock.withLock {
                index.replace(with: store)
                return index.count
            }
        }
        let micros = (DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1_000
        return RebuildReport(listingCount: UInt64(count), durationMicroseconds: micros)
    }

    /// Compares every source row with the index's row of the same id, and the counts.
    func verify() async throws -> VerifyReport {
        let (index, dataset) = (index, dataset)
        return await Self.offCooperativePool {
            let source = dataset.exploreRows()
            let served = index.rows(ids: source.map(\.id))
            let servedByID = Dictionary(served.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            var mismatches: [ListingID] = []
            var mismatchCount = 0
            for row in source where servedByID[row.id] != row {
                mismatchCount += 1
                if mismatches.count < VerifyReport.maximumSampleCount { mismatches.append(row.id) }
            }
            mismatchCount += max(index.count - servedByID.count, 0)
            return VerifyReport(checked: UInt64(source.count), mismatchCount: UInt64(mismatchCount),
                                sampleMismatchIDs: mismatches)
        }
    }

    /// Runs CPU-heavy work (seconds at a million rows) on a global dispatch queue rather than a cooperative
    /// thread, so it cannot starve other tasks.
    static func offCooperativePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }
}
