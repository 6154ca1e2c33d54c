import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreService
import Foundation
import Kafka
import KafkaFeed
import Postgres
import Projector
import TestSupport
import Testing

/// Full rebuilds (``RebuildableFeed``) under the Kafka feed, on a real PostgreSQL and librdkafka's mock cluster:
/// the table is rebuilt beside the live one and swapped in between two committed batches while events keep
/// arriving.
@Suite("Kafka feed rebuilds", .serialized, .timeLimit(.minutes(10)))
struct KafkaRebuildTests {
    /// Counters shared by the test's tasks.
    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [String: Int] = [:]
        func add(_ key: String, _ amount: Int = 1) { lock.withLock { counts[key, default: 0] += amount } }
        subscript(_ key: String) -> Int { lock.withLock { counts[key, default: 0] } }
    }

    static func tableOID(_ connection: PostgresConnection) throws -> Int64 {
        try connection.query("SELECT 'explore.listings_projection'::regclass::oid::bigint").first?
            .decode(0, as: Int64.self) ?? 0
    }

    /// Changes the base tables and produces the events describing them, round after round, until `stop`.
    static func produceUntil(
        _ stop: Tally, configuration: PostgresConfiguration, brokers: String, topic: String, tally: Tally
    ) async throws {
        var round: UInt64 = 100
        while stop["stop"] == 0 {
            round += 1
            let events = try await blocking { [round] in
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try KafkaFeedFixtures.changeBaseTables(
                    connection, count: 150, topic: topic, partitions: 6, seed: round)
            }
            try await KafkaFeedFixtures.produce(events.records, brokers: brokers)
            tally.add("records", events.records.count)
            tally.add("applicable", events.applicable)
            tally.add("rounds")
        }
    }

    /// Admin REBUILD through the service while events keep being produced and searches keep running: no search
    /// fails or comes back empty, STATS shows the rebuild's progress, the table is a new one equal to the
    /// defining query (the damage done to the old one is gone), the cache equals the table, and every event
    /// produced before, during and after the rebuild was applied and counted once.
    @Test func adminRebuildWhileEventsFlowLosesNothing() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 4_000) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("flow", partitions: 6)
            var server = ExploreServerConfiguration(host: "127.0.0.1", port: 0)
            server.adminToken = "kafka-token"
            server.shutdownGracePeriod = .seconds(1)
            var serviceConfiguration = ExploreService.Configuration(
                postgres: configuration, batching: .init(window: .milliseconds(5), maximumKeys: 500), server: server)
            serviceConfiguration.feed = .kafka(KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "flow"))
            // Small chunks: the build takes many steps, interleaved with the feed's batches.
            serviceConfiguration.rebuild = .init(chunkSize: 100, swapThreshold: 20)
            let service = try await ExploreService.start(configuration: serviceConfiguration)

            let (appliedBefore, oidBefore) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                // Damage only a rebuild repairs.
                try connection.query("UPDATE explore.listings_projection SET title = 'corrupt' WHERE id % 97 = 0")
                #expect(!(try KafkaFeedFixtures.strictVerify(connection).isClean))
                return (try KafkaFeedFixtures.appliedChanges(connection), try Self.tableOID(connection))
            }

            let tally = Tally()
            let stop = Tally()
            let producer = Task {
                try await Self.produceUntil(
                    stop, configuration: configuration, brokers: cluster.bootstrapServers, topic: "flow", tally: tally)
            }
            let searcher = Task {
                let client = try await ExploreClient.connect(host: "127.0.0.1", port: service.port)
                while stop["stop"] == 0 {
                    do {
                        let result = try await client.search(SearchQuery(sort: .priceAscending, limit: 10))
                        if result.rows.isEmpty || (result.total ?? 0) == 0 { tally.add("emptyResults") }
                        tally.add("queries")
                    } catch {
                        tally.add("queryFailures")
                    }
                }
                await client.close()
            }
            let watcher = Task {
                let client = try await ExploreClient.connect(host: "127.0.0.1", port: service.port)
                while stop["watch"] == 0 {
                    if let rebuild = try await client.stats().feed?.rebuild {
                        tally.add("progressReports")
                        if rebuild.rowsDone > 0 { tally.add("progressWithRows") }
                    }
                }
                await client.close()
            }
            // Events flow before, during and after the rebuild.
            try await blocking { #expect(eventually { tally["rounds"] >= 2 }) }
            // A full rebuild takes seconds on a loaded machine: a per-request timeout as long as it may need.
            let admin = try await ExploreClient.connect(
                host: "127.0.0.1", port: service.port, adminToken: "kafka-token", timeout: .seconds(120))
            // A reader's share lock on the live table holds the swap back (each attempt times out and is retried)
            // until the watcher has seen the progress: a fast machine finishes the fill between two STATS
            // otherwise. The feed's batches take a compatible lock and go on.
            let holder = Task {
                try await blocking {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    try connection.query("BEGIN")
                    try connection.query("LOCK TABLE explore.listings_projection IN ACCESS SHARE MODE")
                    stop.add("locked")
                    // Up to 30 s: on a machine loaded enough to stretch this test from 4 s to 90 s, the fill's
                    // first progress came after the 10 s this waited before. The lock only delays the swap, whose
                    // 100 attempts (200 ms lock waits) start once the fill is done and its rows are visible.
                    _ = eventually(attempts: 1_500) { tally["progressWithRows"] > 0 }
                    try connection.query("COMMIT")
                }
            }
            try await blocking { #expect(eventually { stop["locked"] > 0 }) }
            let roundsBefore = tally["rounds"]
            let rebuilt = try await admin.rebuild()
            let roundsDuring = tally["rounds"]
            try await holder.value
            stop.add("watch")
            try await watcher.value
            try await blocking { #expect(eventually { tally["rounds"] >= roundsDuring + 2 }) }
            stop.add("stop")
            try await producer.value
            try await searcher.value

            let total = Int64(tally["records"])
            let (report, applied, rows, oidAfter) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                #expect(try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "flow") == total
                })
                return (try KafkaFeedFixtures.strictVerify(connection), try KafkaFeedFixtures.appliedChanges(connection),
                        try ProjectionStore.copyProjectionRows(on: connection), try Self.tableOID(connection))
            }
            #expect(roundsDuring > roundsBefore, "events were produced while the rebuild ran")
            #expect(tally["queries"] > 0)
            #expect(tally["queryFailures"] == 0)
            #expect(tally["emptyResults"] == 0, "a search during the rebuild saw an empty cache")
            #expect(tally["progressWithRows"] > 0, "STATS showed the rebuild's progress")
            #expect(rebuilt.listingCount > 0)
            #expect(oidAfter != oidBefore, "the table was swapped for a new one")
            #expect(report.isClean, "missing \(report.missing.prefix(5)) extra \(report.extra.prefix(5)) differing \(report.differing.prefix(5))")
            #expect(report.pending.isEmpty)
            #expect(applied - appliedBefore == Int64(tally["applicable"]), "every event applied and counted once")
            #expect(ProjectionVerifier.compare(cache: service.index, with: rows).isClean)
            #expect(try await admin.verify().mismatchCount == 0)
            #expect(service.projectorStatus.rebuild == nil)
            #expect(service.projectorStatus.lostEvents == 0)
            await admin.close()
            await service.shutdown()
        }
    }

    /// A table built with another projection version is rebuilt in the background when the Kafka feed starts,
    /// while the old table is served and events keep being applied; the new version is recorded with the swap.
    @Test func versionUpgradeOnStartUnderTheKafkaFeed() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 1_500) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("upgrade", partitions: 3)
            let oid = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                try ProjectionStore.buildIfNeeded(on: connection)
                try RebuildStore.recordVersionIfAbsent(ProjectionQuery.shipped.version, on: connection)
                // Pretend an older definition built this table: version 0, and rows that differ from today's.
                try connection.query("UPDATE explore.projection_state SET version = 0")
                try connection.query("UPDATE explore.listings_projection SET title = upper(title)")
                return try Self.tableOID(connection)
            }
            let index = ExploreIndex()
            let driver = KafkaFeedDriver(configuration: .init(
                postgres: configuration, kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "upgrade"),
                batching: .init(window: .milliseconds(5), maximumKeys: 500)), index: index)
            driver.start()
            let events = try await blocking {
                #expect(eventually { driver.status.isBootstrapped })
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try KafkaFeedFixtures.changeBaseTables(
                    connection, count: 1_000, topic: "upgrade", partitions: 3, seed: 4)
            }
            try await KafkaFeedFixtures.produce(events.records, brokers: cluster.bootstrapServers)
            let total = Int64(events.records.count)
            let (upgraded, report, rows, oidAfter) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                let upgraded = try eventually {
                    try RebuildStore.state(on: connection)?.version == ProjectionQuery.shipped.version
                        && !driver.rebuildCoordinator.isRunning
                }
                #expect(try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "upgrade") == total
                })
                return (upgraded, try KafkaFeedFixtures.strictVerify(connection),
                        try ProjectionStore.copyProjectionRows(on: connection), try Self.tableOID(connection))
            }
            try await blocking { driver.stop() }
            #expect(upgraded)
            #expect(driver.rebuildCoordinator.lastError == nil)
            #expect(oidAfter != oid, "the table was swapped for a new one")
            #expect(report.isClean, "missing \(report.missing.prefix(5)) extra \(report.extra.prefix(5)) differing \(report.differing.prefix(5))")
            #expect(ProjectionVerifier.compare(cache: index, with: rows).isClean)
        }
    }

    /// A rebuild asked for through `explore.projection_state` (what `explore-projector rebuild --database-url`
    /// does while a projector follows the feed) is taken up by the running Kafka feed.
    @Test func aRequestInTheStateTableIsTakenUpByTheKafkaFeed() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 1_000) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("requested", partitions: 2)
            let index = ExploreIndex()
            var driverConfiguration = KafkaFeedDriver.Configuration(
                postgres: configuration,
                kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "requested"))
            driverConfiguration.rebuild = .init(postgres: configuration, requestPollInterval: .milliseconds(20))
            let driver = KafkaFeedDriver(configuration: driverConfiguration, index: index)
            driver.start()
            let (finished, error, oidBefore, oidAfter) = try await blocking {
                #expect(eventually { driver.status.isBootstrapped })
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                let oid = try Self.tableOID(connection)
                try RebuildStore.requestRebuild(on: connection)
                var error: String?
                let finished = try eventually {
                    let row = try connection.query("""
                        SELECT rebuild_requested_at IS NULL AND rebuild_finished_at >= rebuild_started_at, rebuild_error
                        FROM explore.projection_state
                        """).first
                    error = row?[1]
                    return row?[0] == "t"
                }
                return (finished, error, oid, try Self.tableOID(connection))
            }
            try await blocking { driver.stop() }
            #expect(finished)
            #expect(error == nil)
            #expect(oidAfter != oidBefore)
        }
    }

    /// `explore-projector rebuild --database-url` (the built executable) while a service follows the Kafka feed
    /// (what `serve --feed kafka` runs): it finds the feed's lock taken, asks the running projector through
    /// `explore.projection_state`, and the Kafka feed rebuilds the table and reloads its cache.
    @Test func rebuildCommandAsksTheServiceFollowingKafka() async throws {
        try #require(BuiltExecutable.path("explore-projector") != nil, "build explore-projector first (swift build)")
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 800) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("served", partitions: 2)
            var serviceConfiguration = ExploreService.Configuration(
                postgres: configuration, server: ExploreServerConfiguration(host: "127.0.0.1", port: 0))
            serviceConfiguration.feed = .kafka(KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "served"))
            let service = try await ExploreService.start(configuration: serviceConfiguration)
            let oid = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                try connection.query("UPDATE explore.listings_projection SET title = 'x' WHERE id % 7 = 0")
                return try Self.tableOID(connection)
            }
            let url = "postgres://\(configuration.user):\(configuration.password ?? "")@\(configuration.host):"
                + "\(configuration.port)/\(configuration.database)"
            let outcome = try await blocking { try BuiltExecutable.run(["rebuild", "--database-url", url]) }
            #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
            #expect(outcome.stderr.contains("asking it to rebuild"))
            #expect(outcome.stdout.contains("through the running projector"), "\(outcome.stdout)")
            let (report, rows, oidAfter) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return (try KafkaFeedFixtures.strictVerify(connection),
                        try ProjectionStore.copyProjectionRows(on: connection), try Self.tableOID(connection))
            }
            #expect(oidAfter != oid)
            #expect(report.isClean)
            #expect(ProjectionVerifier.compare(cache: service.index, with: rows).isClean,
                    "the service reloaded its cache from the new table")
            await service.shutdown()
        }
    }
}
