import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreService
import Foundation
import Kafka
@testable import KafkaFeed
import Postgres
import Projector
import TestSupport
import Testing

/// The Kafka feed end to end on a real PostgreSQL and librdkafka's mock cluster.
@Suite("Kafka feed", .serialized, .timeLimit(.minutes(10)))
struct KafkaFeedDriverTests {
    /// Events per test run: EXPLORE_KAFKA_MANY_EVENTS=100000 for the full size.
    static let manyEvents: Int = {
        ProcessInfo.processInfo.environment["EXPLORE_KAFKA_MANY_EVENTS"].flatMap(Int.init) ?? 20_000
    }()

    /// Many changes across twelve partitions (the mock cluster keeps about 5 MB per partition), with duplicates, tombstones and shuffled order between
    /// partitions, followed by the service's Kafka feed: afterwards the table equals its definition, the cache
    /// equals the table (admin VERIFY too), and every applicable event was counted exactly once.
    @Test func manyShuffledEventsWithDuplicatesConvergeAndVerifyClean() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 5_000) }
            let cluster = try KafkaMockCluster(brokers: 3)
            try cluster.createTopic("changes", partitions: 12)
            var server = ExploreServerConfiguration(host: "127.0.0.1", port: 0)
            server.adminToken = "kafka-token"
            server.shutdownGracePeriod = .seconds(1)
            var serviceConfiguration = ExploreService.Configuration(
                postgres: configuration, batching: .init(window: .milliseconds(5), maximumKeys: 2_000), server: server)
            serviceConfiguration.feed = .kafka(KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "changes"))
            let service = try await ExploreService.start(configuration: serviceConfiguration)
            let listingsBefore = service.index.count
            #expect(listingsBefore > 0)

            let (events, appliedBefore, staleBefore) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                let applied = try KafkaFeedFixtures.appliedChanges(connection)
                let events = try KafkaFeedFixtures.changeBaseTables(
                    connection, count: Self.manyEvents, topic: "changes", partitions: 12, seed: 21)
                // Before any event is consumed the projection is stale: the test can fail.
                let stale = try KafkaFeedFixtures.strictVerify(connection)
                return (events, applied, stale)
            }
            #expect(!staleBefore.isClean)
            try await KafkaFeedFixtures.produce(events.records, brokers: cluster.bootstrapServers)

            let total = Int64(events.records.count)
            let caughtUp = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "changes") == total
                }
            }
            #expect(caughtUp)
            let (report, applied, rows) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return (try KafkaFeedFixtures.strictVerify(connection), try KafkaFeedFixtures.appliedChanges(connection),
                        try ProjectionStore.copyProjectionRows(on: connection))
            }
            #expect(report.isClean, "missing \(report.missing.prefix(5)) extra \(report.extra.prefix(5)) differing \(report.differing.prefix(5))")
            #expect(report.pending.isEmpty)
            #expect(applied - appliedBefore == Int64(events.applicable))
            #expect(ProjectionVerifier.compare(cache: service.index, with: rows).isClean)
            #expect(service.projectorStatus.rejectedEvents == 0)
            #expect(service.projectorStatus.lostEvents == 0)
            #expect(service.projectorStatus.isConnected)
            // Every batch has a transaction and a cache step, each taking some time.
            #expect(service.projectorStatus.databaseSeconds > 0 && service.projectorStatus.cacheSeconds > 0)

            let client = try await ExploreClient.connect(
                host: "127.0.0.1", port: service.port, adminToken: "kafka-token", timeout: .seconds(120))
            let verified = try await client.verify()
            #expect(verified.mismatchCount == 0)
            #expect(verified.checked == UInt64(rows.count))
            let stats = try await client.stats()
            #expect(stats.lastAppliedChange == UInt64(applied))
            #expect(stats.feedLagMicroseconds != nil)
            // REBUILD rebuilds the table beside the live one and swaps it in between two batches, then the
            // cache: nothing is re-counted.
            let rebuilt = try await client.rebuild()
            #expect(rebuilt.listingCount == UInt64(rows.count))
            #expect(try await client.verify().mismatchCount == 0)
            #expect(service.projectorStatus.appliedChanges == applied)
            await client.close()
            await service.shutdown()
        }
    }

    /// 1 % poison (malformed JSON, unknown tables, missing and invalid keys, unusable envelopes) among valid
    /// events: every poison event is counted and dead-lettered with its reason and original position, every
    /// valid one is applied.
    @Test func poisonIsCountedDeadLetteredAndSkipped() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 2_000) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("mixed", partitions: 3)
            try cluster.createTopic("mixed-dead", partitions: 1)
            let index = ExploreIndex()
            let driver = KafkaFeedDriver(configuration: .init(
                postgres: configuration,
                kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "mixed",
                                              deadLetterTopic: "mixed-dead"),
                batching: .init(window: .milliseconds(5), maximumKeys: 1_000)), index: index)
            driver.start()
            let events = try await blocking {
                #expect(eventually { driver.status.isBootstrapped })
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try KafkaFeedFixtures.changeBaseTables(
                    connection, count: 5_000, topic: "mixed", partitions: 3, seed: 8, poisonPercent: 1)
            }
            #expect(events.poison > 0)
            try await KafkaFeedFixtures.produce(events.records, brokers: cluster.bootstrapServers)
            let total = Int64(events.records.count)
            let (report, rows) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                #expect(try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "mixed") == total
                })
                return (try KafkaFeedFixtures.strictVerify(connection), try ProjectionStore.copyProjectionRows(on: connection))
            }
            #expect(report.isClean)
            #expect(ProjectionVerifier.compare(cache: index, with: rows).isClean)
            #expect(driver.status.rejectedEvents == Int64(events.poison))
            try await blocking { driver.stop() }

            var consumerConfiguration = KafkaConfiguration(["fetch.wait.max.ms": "10", "log_level": "2"])
            consumerConfiguration.bootstrapServers = cluster.bootstrapServers
            let consumer = try KafkaConsumer(configuration: consumerConfiguration)
            try consumer.assign([KafkaTopicPartitionOffset(topic: "mixed-dead", partition: 0, offset: .beginning)])
            var letters: [KafkaMessage] = []
            for try await message in consumer.messages {
                letters.append(message)
                if letters.count == events.poison { break }
            }
            try await consumer.close()
            #expect(letters.count == events.poison)
            let poisonValues = Set(events.records.compactMap(\.value).filter { value in
                if case .rejected = KafkaEventRouter().route(
                    KafkaMessage(topic: "mixed", partition: 0, offset: 0, key: nil, value: value)) { return true }
                return false
            })
            for letter in letters {
                #expect(letter.value.map(poisonValues.contains) == true)
                #expect(letter.header("explore.original.topic") == Array("mixed".utf8))
                #expect(letter.header("explore.rejection.code") != nil)
                #expect(letter.header("explore.rejection.reason") != nil)
                let partition = letter.header("explore.original.partition").flatMap { Int32(String(decoding: $0, as: UTF8.self)) }
                let offset = letter.header("explore.original.offset").flatMap { Int64(String(decoding: $0, as: UTF8.self)) }
                #expect(partition.map { (0..<3).contains($0) } == true)
                #expect(offset.map { $0 >= 0 && $0 < total } == true)
            }
        }
    }

    /// Every broker down, then up, then request errors injected into fetches, metadata and offset commits: the
    /// feed reports the outage, keeps serving the cache, recovers by itself, and loses nothing.
    @Test func brokerOutageAndInjectedErrorsAreRecoveredFrom() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 2_000) }
            let cluster = try KafkaMockCluster(brokers: 3)
            try cluster.createTopic("outage", partitions: 4)
            let index = ExploreIndex()
            let driver = KafkaFeedDriver(configuration: .init(
                postgres: configuration, kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "outage"),
                batching: .init(window: .milliseconds(5), maximumKeys: 1_000),
                backoff: ReconnectBackoff(initial: .milliseconds(20), maximum: .milliseconds(300))), index: index)
            driver.start()
            var produced: Int64 = 0
            func phase(_ seed: UInt64) async throws {
                let events = try await blocking {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    return try KafkaFeedFixtures.changeBaseTables(
                        connection, count: 1_000, topic: "outage", partitions: 4, seed: seed)
                }
                try await KafkaFeedFixtures.produce(events.records, brokers: cluster.bootstrapServers)
                produced += Int64(events.records.count)
                let expected = produced
                let caughtUp = try await blocking {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    return try eventually {
                        try KafkaFeedFixtures.storedOffsetSum(connection, topic: "outage") == expected
                    }
                }
                #expect(caughtUp, "phase \(seed)")
            }
            try await blocking { #expect(eventually { driver.status.isConnected }) }
            try await phase(1)

            for broker in cluster.brokerIDs { try cluster.setBrokerDown(broker) }
            let noticed = try await blocking { eventually { !driver.status.isConnected } }
            #expect(noticed)
            #expect(driver.status.lastError != nil)
            // The cache keeps answering while Kafka is away.
            let during = try index.search(SearchQuery(parameters: [("limit", "10")]))
            #expect(!during.rows.isEmpty)
            for broker in cluster.brokerIDs { try cluster.setBrokerUp(broker) }
            try await phase(2)
            try await blocking { #expect(eventually { driver.status.isConnected }) }

            try cluster.pushRequestErrors(.fetch, [.notLeaderForPartition, .requestTimedOut, .leaderNotAvailable,
                                                   .networkException, .notLeaderForPartition])
            try cluster.pushRequestErrors(.metadata, [.leaderNotAvailable, .requestTimedOut])
            try cluster.pushRequestErrors(.offsetCommit, [.coordinatorNotAvailable, .notCoordinator])
            try await phase(3)

            let (report, rows) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return (try KafkaFeedFixtures.strictVerify(connection), try ProjectionStore.copyProjectionRows(on: connection))
            }
            #expect(report.isClean)
            #expect(ProjectionVerifier.compare(cache: index, with: rows).isClean)
            try await blocking { driver.stop() }
        }
    }

    /// Batch transactions failing just before COMMIT (every third one): the feed reloads the cache and the
    /// offsets from PostgreSQL each time, re-reads the partitions from there, and ends with every event applied
    /// and counted exactly once.
    @Test func failedBatchTransactionsAreRetriedFromTheStoredOffsets() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 1_000) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("flaky", partitions: 3)
            let attempts = Counter()
            struct InjectedFailure: Error {}
            let index = ExploreIndex()
            let driver = KafkaFeedDriver(configuration: .init(
                postgres: configuration, kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "flaky"),
                batching: .init(window: .milliseconds(2), maximumKeys: 200),
                backoff: ReconnectBackoff(initial: .milliseconds(10), maximum: .milliseconds(50)),
                beforeCommit: { if attempts.increment() % 3 == 0 { throw InjectedFailure() } }), index: index)
            driver.start()
            let (events, appliedBefore) = try await blocking {
                #expect(eventually { driver.status.isBootstrapped })
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return (try KafkaFeedFixtures.changeBaseTables(
                    connection, count: 3_000, topic: "flaky", partitions: 3, seed: 13),
                    try KafkaFeedFixtures.appliedChanges(connection))
            }
            try await KafkaFeedFixtures.produce(events.records, brokers: cluster.bootstrapServers)
            let total = Int64(events.records.count)
            let (report, applied, rows) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                #expect(try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "flaky") == total
                })
                return (try KafkaFeedFixtures.strictVerify(connection), try KafkaFeedFixtures.appliedChanges(connection),
                        try ProjectionStore.copyProjectionRows(on: connection))
            }
            try await blocking { driver.stop() }
            #expect(driver.status.failures > 0)
            #expect(report.isClean)
            #expect(applied - appliedBefore == Int64(events.applicable))
            #expect(ProjectionVerifier.compare(cache: index, with: rows).isClean)
        }
    }

    /// Events deleted by the topic's retention before the feed read them (the mock cluster keeps about 5 MB per
    /// partition) are reported as lost, with the offsets, instead of being skipped silently.
    @Test func eventsDeletedByRetentionAreReportedAsLost() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 300) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("retained", partitions: 1)
            let padding = String(repeating: "x", count: 400)
            let records = (0..<20_000).map { index in
                KafkaProducerRecord(topic: "retained", partition: 0, value: Array(
                    #"{"op": "u", "source": {"schema": "property", "table": "listings"}, "after": {"id": \#(1 + index % 300), "title": "\#(padding)"}}"#.utf8))
            }
            try await KafkaFeedFixtures.produce(records, brokers: cluster.bootstrapServers)
            let index = ExploreIndex()
            let driver = KafkaFeedDriver(configuration: .init(
                postgres: configuration, kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "retained"),
                batching: .init(window: .milliseconds(2), maximumKeys: 1_000)), index: index)
            // A stored position at the start of the partition, as if the feed had stopped there long ago.
            try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                try ProjectionStore.buildIfNeeded(on: connection)
                try connection.query("""
                    INSERT INTO explore.kafka_offsets (feed, topic, partition, next_offset)
                    VALUES ($1, 'retained', 0, 0)
                    """, [ProjectionDefinition.feedName])
            }
            let before = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try KafkaFeedFixtures.appliedChanges(connection)
            }
            driver.start()
            let applied = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                #expect(try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "retained") == 20_000
                })
                return try KafkaFeedFixtures.appliedChanges(connection)
            }
            let status = driver.status
            #expect(status.lostEvents > 0)
            #expect(status.lastError?.contains("retention") == true)
            #expect(applied - before + status.lostEvents == 20_000)
            // A rebuild started after the loss holds what the lost events changed: the loss is no longer reported.
            let rebuilt = try await blocking { try driver.rebuild() }
            #expect(rebuilt.rows > 0)
            try await blocking { driver.stop() }
            #expect(driver.status.lostEvents == 0)
            #expect(driver.status.lastError == nil)
        }
    }

    /// A topic that does not exist yet: the feed bootstraps the cache, reports the missing topic, and starts
    /// applying events once the topic appears.
    @Test func aMissingTopicIsWaitedFor() async throws {
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 500) }
            let cluster = try KafkaMockCluster(brokers: 1)
            // The mock cluster creates topics on first mention; an error on the topic makes it look missing.
            try cluster.setTopicError("late", .unknownTopicOrPartition)
            let index = ExploreIndex()
            let driver = KafkaFeedDriver(configuration: .init(
                postgres: configuration, kafka: KafkaFeedFixtures.feed(brokers: cluster.bootstrapServers, topic: "late"),
                backoff: ReconnectBackoff(initial: .milliseconds(20), maximum: .milliseconds(200))), index: index)
            driver.start()
            try await blocking {
                #expect(eventually { driver.status.isBootstrapped })
                #expect(eventually { driver.status.lastError != nil && !driver.status.isConnected })
            }
            #expect(index.count > 0)
            try cluster.setTopicError("late", nil)
            let events = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                return try KafkaFeedFixtures.changeBaseTables(connection, count: 300, topic: "late", partitions: 2, seed: 3)
            }
            try await KafkaFeedFixtures.produce(events.records, brokers: cluster.bootstrapServers)
            let total = Int64(events.records.count)
            try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                #expect(try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "late") == total
                })
                #expect(try KafkaFeedFixtures.strictVerify(connection).isClean)
            }
            #expect(driver.status.isConnected)
            try await blocking { driver.stop() }
        }
    }
}

/// A thread-safe counter for fault injection.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    /// Adds one and returns the new value.
    func increment() -> Int { lock.withLock { value += 1; return value } }
}
