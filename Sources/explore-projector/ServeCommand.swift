import ArgumentParser
import DemoData
import Dispatch
import ExploreQuery
import ExploreServer
import ExploreWire
import Foundation

/// `explore-projector serve --demo N`: serves a generated in-memory data set over the binary protocol, so the
/// protocol can be exercised end to end before the projector feeds a real one.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Serve a demo data set.")

    @Option(help: "Number of generated listings to serve.") var demo: Int
    @Option(help: "Seed of the generated data set.") var seed: UInt64 = 1
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 7700
    @Option(help: "Admin token enabling REBUILD and VERIFY.") var adminToken: String?
    @Option(help: "Filter field to switch off (e.g. bedrooms); repeatable.") var disableFilter: [String] = []
    @Option(help: "Listing type to switch off (development or existing); repeatable.") var disableType: [String] = []
    @Option(help: "Maximum connections.") var maxConnections = 1024
    @Option(help: "Idle timeout in seconds.") var idleTimeout: Int64 = 300

    func validate() throws {
        guard demo >= 0 else { throw ValidationError("--demo must be >= 0") }
        for name in disableFilter where FilterField(name: name) == nil {
            throw ValidationError("unknown filter \(name); known: \(FilterField.allCases.map(\.name).joined(separator: ", "))")
        }
        for name in disableType where ListingType(name: name) == nil {
            throw ValidationError("unknown listing type \(name)")
        }
    }

    func run() async throws {
        let dataset = DemoDataset(listings: demo, seed: seed)
        let index = ExploreIndex(store: ExploreStore(bulk: dataset.exploreRows()))
        var configuration = ExploreServerConfiguration(host: host, port: port)
        configuration.adminToken = adminToken
        configuration.maximumConnections = maxConnections
        configuration.idleTimeout = .seconds(idleTimeout)
        configuration.features = FeatureFlags(
            enabledFilters: Set(FilterField.allCases).subtracting(disableFilter.compactMap(FilterField.init(name:))),
            enabledListingTypes: Set(ListingType.allCases).subtracting(disableType.compactMap(ListingType.init(name:))))
        let server = try await ExploreServer.start(configuration: configuration, backend: index,
                                                   admin: DemoAdmin(index: index, dataset: dataset))
        print("serving \(index.count) demo listings on \(host):\(server.port)")

        // SIGINT / SIGTERM trigger a graceful shutdown.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let signals = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .main) }
        for source in signals {
            source.setEventHandler { Task { await server.shutdown() } }
            source.resume()
        }
        await server.waitUntilClosed()
        await server.shutdown()
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
