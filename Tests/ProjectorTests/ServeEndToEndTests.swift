import DemoData
import Dispatch
import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreService
import Migrations
import Postgres
import Projector
import Synchronization
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The serve pipeline end to end on a real PostgreSQL: migrations, demo data, ExploreService, ExploreClient.
@Suite struct ServeEndToEndTests {
    /// Searches through the protocol return what an index built straight from the generated data returns; a price
    /// edited in PostgreSQL becomes visible through the protocol; VERIFY is clean; REBUILD keeps every listing.
    @Test func servesTheDatabaseAndFollowsItsChanges() async throws {
        try await TestPostgres.withDatabase { configuration in
            let dataset = DemoDataset(listings: 2_000, seed: 11)
            let (service, client) = try await Self.serve(
                dataset, on: configuration, batching: .init(window: .milliseconds(2), maximumKeys: 500),
                pollInterval: .milliseconds(50))
            let reference = ExploreIndex(store: ExploreStore(bulk: dataset.exploreRows()))

            // Differential: the same queries against the reference and the service, same ids in the same order.
            let queries: [[(key: String, value: String)]] = [
                [("city", "Lisbon"), ("type", "existing"), ("price", "100000..400000"), ("sort", "price_asc"),
                 ("facets", "city,price"), ("limit", "1000")],
                [("type", "development"), ("sort", "price_desc"), ("limit", "200")],
                [("bedrooms", "2..3"), ("sort", "newest"), ("limit", "500")],
                [("limit", "1000"), ("sort", "price_asc")],
            ]
            for parameters in queries {
                let query = try SearchQuery(parameters: parameters)
                let expected = try reference.search(query)
                let served = try await client.search(query)
                #expect(served.rows.map(\.id) == expected.rows.map(\.id), "query \(parameters)")
                #expect(served.total == expected.total, "query \(parameters)")
            }
            #expect(service.index.count == reference.count)

            // A price edit in PostgreSQL reaches the protocol.
            let target = try #require(dataset.exploreRows().first { $0.listingType == .existing })
            let newPrice: Int64 = 987_654_321
            try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                try connection.query("UPDATE property.existing_properties SET price = $1 WHERE listing_id = $2",
                                     [newPrice, target.id])
            }
            let probe = try SearchQuery(parameters: [("price", "\(newPrice)..\(newPrice)"), ("type", "existing")])
            var seen: [ListingID] = []
            for _ in 0..<200 {
                seen = try await client.search(probe).rows.map(\.id)
                if seen == [target.id] { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(seen == [target.id])
            let fetched = try await client.get(ids: [target.id])
            #expect(fetched.first?.priceFrom == newPrice)

            let verified = try await client.verify()
            #expect(verified.mismatchCount == 0)
            #expect(verified.checked == UInt64(reference.count))

            let rebuilt = try await client.rebuild()
            #expect(rebuilt.listingCount == UInt64(reference.count))
            #expect(try await client.search(probe).rows.map(\.id) == [target.id])

            let stats = try await client.stats()
            #expect(stats.listingCount == UInt64(reference.count))
            #expect(stats.lastAppliedChange != nil)

            await client.close()
            await service.shutdown()
        }
    }

    /// REBUILD while a writer keeps changing prices and a reader keeps searching: no search fails, and once the
    /// writer stops the cache converges on the database (every write visible, VERIFY clean).
    @Test func rebuildDuringWritesLosesNothing() async throws {
        try await TestPostgres.withDatabase { configuration in
            let dataset = DemoDataset(listings: 1_000, seed: 5)
            let (service, admin) = try await Self.serve(dataset, on: configuration)
            let reader = try await ExploreClient.connect(host: "127.0.0.1", port: service.port)

            let existing = dataset.exploreRows().filter { $0.listingType == .existing }.map(\.id)
            let targets = Array(existing.prefix(40))
            // Each write gives a target a price no other listing has: 500_000_000 + round * 1_000 + index.
            let writer = Task {
                try await blocking {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    for round in 0..<30 {
                        for (offset, id) in targets.enumerated() {
                            try connection.query(
                                "UPDATE property.existing_properties SET price = $1 WHERE listing_id = $2",
                                [Int64(500_000_000 + round * 1_000 + offset), id])
                        }
                        usleep(5_000)
                    }
                }
            }
            let query = try SearchQuery(parameters: [("type", "existing"), ("sort", "price_desc"), ("limit", "50")])
            for _ in 0..<3 {
                let rebuilt = try await admin.rebuild()
                #expect(rebuilt.listingCount == UInt64(service.index.count))
                _ = try await reader.search(query)
            }
            try await writer.value

            // The last round's prices, in descending order, are the 40 most expensive listings.
            let expected = targets.enumerated().reversed().map(\.element)
            var seen: [ListingID] = []
            for _ in 0..<200 {
                seen = Array(try await reader.search(query).rows.prefix(targets.count).map(\.id))
                if seen == expected { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(seen == expected)
            let prices = try await reader.get(ids: expected).map(\.priceFrom)
            #expect(prices == targets.indices.reversed().map { Optional(Int64(500_000_000 + 29 * 1_000 + $0)) })
            let verified = try await admin.verify()
            #expect(verified.mismatchCount == 0)

            await admin.close()
            await reader.close()
            await service.shutdown()
        }
    }

    /// VERIFY while a writer keeps changing prices: changes in flight are not divergence, a listing corrupted in the
    /// cache is, and a VERIFY that cannot run answers `admin_failed` with its reason. (A VERIFY that waited for the
    /// cache to hold still during a whole comparison failed under any steady writer.)
    @Test func verifyDuringWritesReportsOnlyLastingDifferences() async throws {
        try await TestPostgres.withDatabase { configuration in
            let dataset = DemoDataset(listings: 2_000, seed: 23)
            let (service, admin) = try await Self.serve(dataset, on: configuration)

            let rows = dataset.exploreRows()
            let existing = rows.filter { $0.listingType == .existing }.map(\.id)
            let stop = WriterStop()
            let writer = Task {
                try await blocking {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    var round: Int64 = 0
                    while !stop.isSet {
                        round += 1
                        try connection.query("UPDATE property.existing_properties SET price = $1 WHERE listing_id = $2",
                                             [100_000 + round, existing[Int(round) % existing.count]])
                    }
                }
            }
            var verified = try await admin.verify()
            #expect(verified.mismatchCount == 0)
            #expect(verified.checked == UInt64(rows.count))

            // A development (the writer changes only existing properties' prices) corrupted in the cache alone.
            var corrupted = try #require(rows.first { $0.listingType == .development })
            corrupted.title += " (not in the database)"
            service.index.apply(ListingChangeBatch([.upsert(corrupted)]))
            verified = try await admin.verify()
            #expect(verified.mismatchCount == 1)
            #expect(verified.sampleMismatchIDs == [corrupted.id])

            stop.set()
            try await writer.value
            // A VERIFY that cannot read the checkpoint fails with its reason, and the connection stays usable.
            try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                try connection.executeScript("ALTER TABLE explore.checkpoint RENAME TO checkpoint_moved")
            }
            do throws(ExploreClientError) {
                _ = try await admin.verify()
                Issue.record("VERIFY succeeded without a checkpoint")
            } catch {
                #expect(error.serverError?.code == .adminFailed)
                #expect(error.serverError?.message.contains("checkpoint") == true, "\(error)")
            }
            #expect(try await admin.stats().listingCount == UInt64(rows.count))

            await admin.close()
            await service.shutdown()
        }
    }

    static let adminToken = "end-to-end-token"

    /// Migrates a database, seeds `dataset` into it, starts the service on it (admin operations on) and connects
    /// a client holding the admin token.
    static func serve(
        _ dataset: DemoDataset, on configuration: PostgresConfiguration,
        batching: ChangeBatcher.Configuration = .init(window: .milliseconds(1), maximumKeys: 50),
        pollInterval: Duration = .milliseconds(20)
    ) async throws -> (ExploreService, ExploreClient) {
        try await blocking {
            try ProjectorFixtures.migrate(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try DemoSeeder.seed(dataset, into: connection)
        }
        var server = ExploreServerConfiguration(host: "127.0.0.1", port: 0)
        server.adminToken = adminToken
        server.shutdownGracePeriod = .seconds(1)
        let service = try await ExploreService.start(configuration: .init(
            postgres: configuration, batching: batching, pollInterval: pollInterval, server: server))
        // REBUILD and VERIFY take seconds on a loaded machine: a generous per-request timeout for this client.
        let client = try await ExploreClient.connect(
            host: "127.0.0.1", port: service.port, adminToken: adminToken, timeout: .seconds(120))
        return (service, client)
    }

    /// A database without the migrations is refused with a one-line error naming the fix.
    @Test func refusesAnUnmigratedDatabase() async throws {
        try await TestPostgres.withDatabase { configuration in
            do {
                _ = try await ExploreService.start(configuration: .init(
                    postgres: configuration, server: ExploreServerConfiguration(host: "127.0.0.1", port: 0)))
                Issue.record("the service started on a database without the projection tables")
            } catch let error as ExploreServiceError {
                #expect(error.code == .notMigrated)
                #expect(error.message.contains("explore-projector migrate up"))
            }
        }
    }
}

/// Runs blocking libpq work on a dispatch thread, never on the cooperative pool.
/// Tells a writer thread to stop.
private final class WriterStop: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

private func blocking(_ work: @escaping @Sendable () throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        DispatchQueue.global().async {
            do {
                try work()
                continuation.resume()
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}
