import ChangeEvents
import DemoData
import Dispatch
import Foundation
import Kafka
import KafkaFeed
import Migrations
import Postgres
import Projector
import TestSupport

/// Shared set-up for the Kafka feed's integration tests: a migrated, seeded database, a workload of base-table
/// changes with the change events describing them, and bounded waits.
enum KafkaFeedFixtures {
    /// The repository root, found from this file's path.
    static let repositoryRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    /// Migrates a fresh database and loads `listings` demo listings.
    static func prepare(_ configuration: PostgresConfiguration, listings: Int) throws {
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        let files = try MigrationFile.load(directory: repositoryRoot + "/sql")
        _ = try MigrationRunner(connection: connection, files: files, log: { _ in }).up()
        try DemoSeeder.seed(DemoDataset(listings: listings, seed: 5), into: connection)
    }

    /// Events describing base-table changes, and how many of them name something to recompute.
    struct Events {
        var records: [KafkaProducerRecord] = []
        /// Records that are neither tombstones nor poison.
        var applicable = 0
        /// Records that are poison.
        var poison = 0
    }

    /// Changes the base tables in `rounds` rounds (prices, titles, statuses, primary images, location names)
    /// and returns at least `count` events describing the changed rows (Debezium with and without the schema
    /// wrapper, minimal envelopes, tombstones), spread over `partitions` partitions in shuffled order, with
    /// about 10 % duplicates and `poisonPercent` % poison.
    static func changeBaseTables(
        _ connection: PostgresConnection, count: Int, topic: String, partitions: Int32, seed: UInt64,
        poisonPercent: Int = 0
    ) throws -> Events {
        var random = SplitMix64(seed: seed)
        let ids = try connection.query("SELECT id, type FROM property.listings ORDER BY id").map {
            (try $0.decode(0, as: Int64.self), $0[1] ?? "")
        }
        let locations = try connection.query("SELECT id FROM property.locations ORDER BY id").map {
            try $0.decode(0, as: Int64.self)
        }
        let existing = ids.filter { $0.1 == "existing" }.map(\.0)
        let developments = ids.filter { $0.1 == "development" }.map(\.0)
        let plain = ChangeEventEncoder()
        let wrapped = ChangeEventEncoder(includesSchema: true)
        var changes: [SourceChange] = []
        func pick(_ from: [Int64], _ n: Int) -> [Int64] {
            (0..<n).map { _ in from[Int(random.next() % UInt64(from.count))] }
        }
        func int8Array(_ values: [Int64]) -> String { "{" + values.map(String.init).joined(separator: ",") + "}" }
        while changes.count < count {
            let chunk = min(2_000, count - changes.count)
            for row in try connection.query("""
                UPDATE property.existing_properties SET price = price + 1000 WHERE listing_id = ANY($1::bigint[])
                RETURNING listing_id, price
                """, [int8Array(pick(existing, chunk * 4 / 10))]) {
                let id = try row.decode(0, as: Int64.self)
                changes.append(SourceChange(
                    table: "property.existing_properties", operation: .update, key: ["listing_id": .integer(id)],
                    after: ["listing_id": .integer(id), "price": .integer(try row.decode(1, as: Int64.self))]))
            }
            for row in try connection.query("""
                UPDATE property.developments SET price_from = price_from + 7 WHERE listing_id = ANY($1::bigint[])
                RETURNING listing_id
                """, [int8Array(pick(developments, chunk * 2 / 10))]) {
                changes.append(SourceChange(table: "developments", operation: .change,
                                            key: ["id": .integer(try row.decode(0, as: Int64.self))]))
            }
            for row in try connection.query("""
                UPDATE property.listings
                SET status = CASE WHEN status = 'archived' THEN 'published' ELSE 'archived' END,
                    updated_at = greatest(now(), created_at)
                WHERE id = ANY($1::bigint[]) RETURNING id, status
                """, [int8Array(pick(ids.map(\.0), chunk * 2 / 10))]) {
                let id = try row.decode(0, as: Int64.self)
                changes.append(SourceChange(
                    table: "property.listings", operation: .update, key: ["id": .string(String(id))],
                    after: ["id": .integer(id), "status": .string(row[1] ?? "")]))
            }
            for row in try connection.query("""
                UPDATE property.media SET url = url || '?v' WHERE is_primary AND listing_id = ANY($1::bigint[])
                  AND length(url) < 400
                RETURNING id, listing_id
                """, [int8Array(pick(ids.map(\.0), chunk * 2 / 10))]) {
                let id = try row.decode(0, as: Int64.self)
                let listing = try row.decode(1, as: Int64.self)
                changes.append(SourceChange(
                    table: "property.media", operation: .update, key: ["id": .integer(id)],
                    before: ["id": .integer(id), "listing_id": .integer(listing)],
                    after: ["id": .integer(id), "listing_id": .integer(listing)]))
            }
            for row in try connection.query("""
                UPDATE property.locations SET area = area || '.' WHERE id = ANY($1::bigint[]) AND length(area) < 90
                RETURNING id
                """, [int8Array(pick(locations, 2))]) {
                let id = try row.decode(0, as: Int64.self)
                changes.append(SourceChange(table: "property.locations", operation: .update, key: ["id": .integer(id)],
                                            after: ["id": .integer(id)]))
            }
        }
        var events = Events()
        for change in changes {
            let partition = Int32(random.next() % UInt64(partitions))
            let value: [UInt8]?
            if change.operation == .change {
                value = plain.minimalValue(change)
            } else {
                value = (random.next() % 2 == 0 ? plain : wrapped).debeziumValue(change)
            }
            let key = change.operation == .change ? nil : plain.debeziumKey(change)
            let copies = random.next() % 10 == 0 ? 2 : 1
            for _ in 0..<copies {
                events.records.append(KafkaProducerRecord(topic: topic, partition: partition, key: key, value: value))
                events.applicable += 1
            }
            if random.next() % 20 == 0 {
                // A tombstone after a change, as Debezium writes after deletes.
                events.records.append(KafkaProducerRecord(topic: topic, partition: partition, key: key, value: nil))
            }
            if poisonPercent > 0 && Int(random.next() % 100) < poisonPercent {
                let poison: [String] = [
                    "{not json", #"{"table": "property.users", "id": 1}"#, #"{"table": "listings"}"#,
                    #"{"table": "listings", "id": "twelve"}"#, #"{"op": "u", "source": {"table": "listings"}}"#,
                ]
                let text = poison[Int(random.next() % UInt64(poison.count))]
                events.records.append(KafkaProducerRecord(
                    topic: topic, partition: Int32(random.next() % UInt64(partitions)), value: Array(text.utf8)))
                events.poison += 1
            }
        }
        // Shuffle, then keep each partition's own order: the interleaving between partitions is random.
        events.records.shuffle(using: &random)
        return events
    }

    /// Produces every record and waits for delivery.
    static func produce(_ records: [KafkaProducerRecord], brokers: String) async throws {
        var configuration = KafkaConfiguration(["linger.ms": "2", "log_level": "2", "queue.buffering.max.messages": "1000000"])
        configuration.bootstrapServers = brokers
        let producer = try KafkaProducer(configuration: configuration)
        for record in records { try producer.enqueue(record) }
        try await producer.flush(timeout: .seconds(60))
        try await producer.close()
    }

    /// The feed configuration the tests use: short fetch waits against the mock cluster.
    static func feed(brokers: String, topic: String, deadLetterTopic: String? = nil) -> KafkaFeedConfiguration {
        KafkaFeedConfiguration(
            brokers: brokers, topic: topic, group: "explore-tests", deadLetterTopic: deadLetterTopic,
            properties: ["fetch.wait.max.ms": "10", "log_level": "2", "reconnect.backoff.max.ms": "200",
                         "topic.metadata.refresh.interval.ms": "500"],
            metadataInterval: .milliseconds(200), outboxPruneInterval: .milliseconds(500))
    }

    /// Sum of the stored next offsets of `topic`: the number of its records the projection covers.
    static func storedOffsetSum(_ connection: PostgresConnection, topic: String) throws -> Int64 {
        try connection.query("SELECT COALESCE(sum(next_offset), 0)::bigint FROM explore.kafka_offsets WHERE topic = $1",
                             [topic]).first?.decode(0, as: Int64.self) ?? 0
    }

    static func appliedChanges(_ connection: PostgresConnection) throws -> Int64 {
        try ProjectionStore.checkpoint(on: connection).appliedChanges
    }

    /// Strict verification: prunes the outbox first, so nothing counts as pending and every difference between
    /// the table and the definition is reported.
    static func strictVerify(_ connection: PostgresConnection) throws -> ProjectionVerifier.Report {
        try KafkaOffsetStore.pruneOutbox(on: connection, limit: 100_000_000)
        return try ProjectionVerifier.verifyTable(on: connection)
    }
}

/// Runs blocking work (libpq, waits) off the cooperative pool.
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    let result: Result<T, any Error> = await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: Result { try work() }) }
    }
    return try result.get()
}
