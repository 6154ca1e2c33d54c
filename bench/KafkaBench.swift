import ArgumentParser
import ChangeEvents
import DemoData
import Dispatch
import ExploreQuery
import Foundation
import Kafka
import KafkaFeed
import Migrations
import Postgres
import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `bench --kafka --database-url URL`: the Kafka feed against a seeded, migrated database and librdkafka's mock
/// cluster. Freshness (produce to visible in the cache) at fixed event rates, then the sustained rate at which
/// the feed applies a backlog.
///
/// Each freshness event first commits a unique price for an existing listing in PostgreSQL, then produces the
/// Debezium event describing it; the clock starts when the event is handed to the producer and stops when a
/// watcher thread sees the price in the cache. The backlog phase stops the feed, produces `events` events for
/// changed rows, starts a fresh feed (which bootstraps the cache) and times it from connected to caught up.
enum KafkaBench {
    struct Figures {
        var listings = 0
        var freshness: [(rate: Int, achieved: Double, p50: Double, p99: Double, maximum: Double, samples: Int)] = []
        var sustainedEvents = 0
        var sustainedSeconds = 0.0
        var bootstrapSeconds = 0.0
        var sampleVerifyClean = false
        var lostEvents: Int64 = 0
    }

    static let topic = "bench-changes"
    /// Each paced rate gets a topic (and a feed) of its own, for the same reason as the backlog: the message sets
    /// an earlier phase left would slow every fetch of the next one.
    static func freshnessTopic(rate: Int) -> String { "\(topic)-\(rate)" }
    /// The backlog goes to a topic of its own. librdkafka's mock broker finds a fetch offset by walking the
    /// partition's message sets from the oldest one, so the thousands of small sets the paced freshness phases
    /// leave behind would make every backlog fetch slower, and the figure would measure the mock, not the feed.
    static let backlogTopic = "bench-backlog"
    /// The backlog topic has many partitions: the mock cluster keeps only about 5 MB per partition, and the
    /// backlog must fit.
    static let partitions: Int32 = 32
    /// A freshness topic has a few (a phase's events fit): the mock broker's cost per fetch grows with the
    /// message sets of every partition, and each 10 ms tick writes one set per partition it touches.
    static let freshnessPartitions: Int32 = 8

    static func progress(_ message: String) {
        FileHandle.standardError.write(Data("[bench kafka] \(message)\n".utf8))
    }

    static func run(
        databaseURL: String, listings: Int?, events: Int, rates: [Int], secondsPerRate: Int
    ) throws -> Figures {
        let postgres = try PostgresConfiguration(url: databaseURL)
        let connection = try PostgresConnection.connect(postgres)
        defer { connection.close() }
        if let listings { try prepare(connection, listings: listings) }
        guard try connection.query("SELECT to_regclass('explore.kafka_offsets') IS NOT NULL").first?[0] == "t" else {
            throw BenchFailure("the database is not migrated: run explore-projector migrate up")
        }
        let candidates = try connection.query("""
            SELECT l.id FROM property.listings l JOIN property.existing_properties e ON e.listing_id = l.id
            WHERE l.status IN ('published', 'active') ORDER BY l.id
            """).map { try $0.decode(0, as: Int64.self) }
        guard candidates.count >= 1_000 else {
            throw BenchFailure("the database holds \(candidates.count) visible existing listings; "
                + "seed it first: explore-projector seed-demo --listings 1000000")
        }
        var figures = Figures()
        // A Kafka-only deployment switches outbox capture off (see `explore-projector outbox-capture`): its
        // writers, the bench's included, then no longer fill an outbox the feed would only prune. The previous
        // state is restored at the end.
        let captureWasOn = try OutboxCapture.triggers(on: connection).contains { $0.isEnabled }
        try OutboxCapture.set(enabled: false, on: connection)
        defer { if captureWasOn { _ = try? OutboxCapture.set(enabled: true, on: connection) } }
        let cluster = try KafkaMockCluster(brokers: 1)
        for rate in rates { try cluster.createTopic(freshnessTopic(rate: rate), partitions: Int(freshnessPartitions)) }
        try cluster.createTopic(backlogTopic, partitions: Int(partitions))
        // A previous run's offsets name another cluster's topics: start these from the beginning.
        // Plain names (letters, digits, dashes): the text[] literal needs no quoting.
        let benchTopics = "{" + (rates.map(freshnessTopic(rate:)) + [backlogTopic]).joined(separator: ",") + "}"
        try connection.query("DELETE FROM explore.kafka_offsets WHERE topic = ANY($1::text[])", [benchTopics])
        // Each phase sets its own topic.
        let feed = KafkaFeedConfiguration(
            brokers: cluster.bootstrapServers, topic: backlogTopic, group: "explore-bench",
            properties: ["fetch.wait.max.ms": "2", "log_level": "2"], metadataInterval: .seconds(1))
        let driverConfiguration = KafkaFeedDriver.Configuration(
            postgres: postgres, kafka: feed, batching: .init(window: .milliseconds(5), maximumKeys: 5_000))
        var producerProperties = KafkaConfiguration([
            "linger.ms": "0", "log_level": "2", "queue.buffering.max.messages": "2000000",
        ])
        producerProperties.bootstrapServers = cluster.bootstrapServers
        let producer = try KafkaProducer(configuration: producerProperties)
        let encoder = ChangeEventEncoder()
        var random = SplitMix64(seed: 42)
        // Above every price in the table, so no freshness event can be a no-op left over from an earlier run.
        var nextPrice = try connection.query("SELECT COALESCE(max(price), 0) FROM property.existing_properties")
            .first?.decode(0, as: Int64.self) ?? 0

        func record(_ id: Int64, price: Int64, topic: String) -> KafkaProducerRecord {
            let change = SourceChange(
                table: "property.existing_properties", operation: .update, key: ["listing_id": .integer(id)],
                after: ["listing_id": .integer(id), "price": .integer(price)])
            return KafkaProducerRecord(
                topic: topic,
                partition: Int32(UInt64(id) % UInt64(topic == backlogTopic ? partitions : freshnessPartitions)),
                key: encoder.debeziumKey(change),
                value: encoder.debeziumValue(change))
        }
        func int8Array(_ values: [Int64]) -> String { "{" + values.map(String.init).joined(separator: ",") + "}" }

        // MARK: Freshness
        // Earlier runs' updates leave the tables due for autovacuum and autoanalyze, which would then run beside
        // a paced phase and show up in its tail: start from freshly vacuumed tables with current statistics, as
        // `bench --projector` does.
        try connection.executeScript("""
            VACUUM ANALYZE property.existing_properties, explore.listings_projection, explore.kafka_offsets, \
            explore.checkpoint
            """)
        for rate in rates {
            let index = ExploreIndex()
            var rateConfiguration = driverConfiguration
            rateConfiguration.kafka.topic = freshnessTopic(rate: rate)
            let driver = KafkaFeedDriver(configuration: rateConfiguration, index: index)
            let started = DispatchTime.now().uptimeNanoseconds
            driver.start()
            try waitFor("the cache bootstrap and the assignment") {
                driver.status.isBootstrapped && driver.status.isConnected
            }
            figures.listings = index.count
            progress("cache bootstrapped with \(index.count) listings in "
                + String(format: "%.1f s", Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9))
            // Writing back the buffers earlier phases dirtied (PostgreSQL's timed checkpoint every 5 minutes, then
            // the kernel's writeback of what it wrote) stalls commits for up to a second or two, and one landing
            // inside a paced phase was this bench's tail. Each phase starts after a checkpoint and a sync instead
            // (without the right to run a checkpoint, after the sync alone).
            quiesceWrites(connection)
            // Ticks of 10 ms: each commits rate/100 price changes in one statement, then produces their events.
            let perTick = max(1, rate / 100)
            let ticks = secondsPerRate * 100
            let watcher = FreshnessWatcher(index: index)
            watcher.start()
            let begin = DispatchTime.now().uptimeNanoseconds
            var sent = 0
            for tick in 0..<ticks {
                let due = begin + UInt64(tick) * 10_000_000
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { usleep(useconds_t((due - now) / 1_000)) }
                var ids: [Int64] = []
                var prices: [Int64] = []
                var seen = Set<Int64>()
                var attempts = 0
                // Bounded: when the feed falls far behind, most listings are pending and the tick sends less.
                while ids.count < perTick && attempts < perTick * 20 {
                    attempts += 1
                    let id = candidates[Int(random.next() % UInt64(candidates.count))]
                    guard seen.insert(id).inserted, !watcher.isPending(id) else { continue }
                    ids.append(id)
                    nextPrice += 1
                    prices.append(nextPrice)
                }
                try connection.query("""
                    UPDATE property.existing_properties e SET price = u.price
                    FROM unnest($1::bigint[], $2::bigint[]) AS u(id, price) WHERE e.listing_id = u.id
                    """, [int8Array(ids), int8Array(prices)])
                for (id, price) in zip(ids, prices) {
                    watcher.expect(id: id, price: price, since: DispatchTime.now().uptimeNanoseconds)
                    try producer.enqueue(record(id, price: price, topic: freshnessTopic(rate: rate)))
                }
                sent += ids.count
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
            let latencies = watcher.finish(timeout: .seconds(30)).sorted()
            func percentile(_ p: Double) -> Double {
                latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
            }
            figures.freshness.append((rate, Double(sent) / elapsed, percentile(0.5), percentile(0.99),
                                      latencies.last ?? .nan, latencies.count))
            progress(String(format: "freshness at %d events/s: p50 %.1f ms, p99 %.1f ms (%d of %d seen)",
                            rate, percentile(0.5), percentile(0.99), latencies.count, sent))
            driver.stop()
        }

        // MARK: Sustained
        progress("producing a backlog of \(events) events for changed rows")
        var backlogIDs: [Int64] = []
        backlogIDs.reserveCapacity(events)
        for _ in 0..<events { backlogIDs.append(candidates[Int(random.next() % UInt64(candidates.count))]) }
        for chunk in stride(from: 0, to: backlogIDs.count, by: 20_000) {
            let ids = Array(backlogIDs[chunk..<min(backlogIDs.count, chunk + 20_000)])
            try connection.query("""
                UPDATE property.existing_properties SET price = price + 1 WHERE listing_id = ANY($1::bigint[])
                """, [int8Array(ids)])
        }
        // Lingering lets the producer fill large message sets, as a busy Debezium connector's producer does.
        var backlogProperties = producerProperties
        backlogProperties["linger.ms"] = "50"
        let backlogProducer = try KafkaProducer(configuration: backlogProperties)
        for id in backlogIDs {
            do {
                try backlogProducer.enqueue(record(id, price: 0, topic: backlogTopic))
            } catch {
                try backlogProducer.flushSynchronously(timeout: .seconds(60))
                try backlogProducer.enqueue(record(id, price: 0, topic: backlogTopic))
            }
        }
        try backlogProducer.flushSynchronously(timeout: .seconds(120))
        let base = try ProjectionStore.checkpoint(on: connection).appliedChanges

        var backlogConfiguration = driverConfiguration
        backlogConfiguration.kafka.topic = backlogTopic
        let driver = KafkaFeedDriver(configuration: backlogConfiguration, index: ExploreIndex())
        let started = DispatchTime.now().uptimeNanoseconds
        driver.start()
        try waitFor("the second bootstrap") { driver.status.isBootstrapped }
        figures.bootstrapSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        // The clock starts once the partitions are assigned: joining the group is not applying events.
        try waitFor("the backlog topic's assignment") { driver.status.isConnected }
        let connected = DispatchTime.now().uptimeNanoseconds
        let target = base + Int64(events)
        do {
            try waitFor("the backlog", timeout: .seconds(600)) { driver.status.appliedChanges >= target }
        } catch {
            let status = driver.status
            throw BenchFailure("\(error): applied \(status.appliedChanges - base) of \(events) events, "
                + "\(status.rejectedEvents) rejected, last error \(status.lastError ?? "none")")
        }
        figures.sustainedSeconds = Double(DispatchTime.now().uptimeNanoseconds - connected) / 1e9
        figures.lostEvents = driver.status.lostEvents
        figures.sustainedEvents = events
        progress(String(format: "backlog of %d events applied in %.2f s (%.0f events/s)", events,
                        figures.sustainedSeconds, Double(events) / figures.sustainedSeconds))
        driver.stop()
        figures.sampleVerifyClean = try ProjectionVerifier.verifyTable(on: connection, sample: 2_000).isClean
        try connection.query("DELETE FROM explore.kafka_offsets WHERE topic = ANY($1::text[])", [benchTopics])
        return figures
    }

    /// Migrates (from `sql/` in the current directory) and loads `listings` demo listings unless the database
    /// already holds exactly that many; a reload also drops the checkpoint so the feed rebuilds the projection.
    static func prepare(_ connection: PostgresConnection, listings: Int) throws {
        let files = try MigrationFile.load(directory: "sql")
        _ = try MigrationRunner(connection: connection, files: files, log: { _ in }).up()
        let present = try connection.query("SELECT count(*) FROM property.listings").first?.decode(0, as: Int64.self)
        guard present != Int64(listings) else { return }
        progress("seeding \(listings) demo listings")
        try DemoSeeder.seed(DemoDataset(listings: listings, seed: 1), into: connection, replace: true)
        try connection.query("DELETE FROM explore.checkpoint WHERE feed = $1", [ProjectionDefinition.feedName])
    }

    /// Waits for `condition`, checking every millisecond; throws once `timeout` has passed without it.
    static func waitFor(_ what: String, timeout: Duration = .seconds(300), _ condition: () -> Bool) throws {
        guard poll(attempts: Int(timeout / .milliseconds(1)), everyMicroseconds: 1_000, condition) else {
            throw BenchFailure("timed out waiting for \(what)")
        }
    }

    static func print(_ figures: Figures, command: String) {
        Swift.print("Kafka feed, \(figures.listings) listings in the cache (mock cluster, 1 broker, "
            + "\(freshnessPartitions) partitions for freshness, \(partitions) for the backlog)")
        Swift.print("command: \(command)")
        for entry in figures.freshness {
            let pass = entry.p99 <= 50 && entry.samples > 0
            Swift.print(String(format: "  freshness @ %5d events/s (achieved %6.0f): p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  [%@ p99 <= 50 ms]",
                               entry.rate, entry.achieved, entry.p50, entry.p99, entry.maximum, pass ? "PASS" : "FAIL"))
        }
        let rate = Double(figures.sustainedEvents) / max(figures.sustainedSeconds, 1e-9)
        Swift.print(String(format: "  sustained: %d events in %.2f s = %.0f events/s  [%@ >= 20,000/s]",
                           figures.sustainedEvents, figures.sustainedSeconds, rate, rate >= 20_000 ? "PASS" : "FAIL"))
        Swift.print(String(format: "  cache bootstrap before the backlog: %.2f s", figures.bootstrapSeconds))
        Swift.print("  sampled verify after the run: \(figures.sampleVerifyClean ? "clean" : "DIVERGED"), "
            + "events lost to retention: \(figures.lostEvents)")
    }
}

/// Watches the cache for expected prices from its own thread; records produce-to-visible latencies in ms.
final class FreshnessWatcher: @unchecked Sendable {
    private let index: ExploreIndex
    private let lock = NSLock()
    private var pending: [Int64: (price: Int64, since: UInt64)] = [:]
    private var latencies: [Double] = []
    private var running = true
    private let done = DispatchSemaphore(value: 0)

    init(index: ExploreIndex) { self.index = index }

    func isPending(_ id: Int64) -> Bool { lock.withLock { pending[id] != nil } }

    func expect(id: Int64, price: Int64, since: UInt64) {
        lock.withLock { pending[id] = (price, since) }
    }

    func start() {
        let thread = Thread { [self] in
            while lock.withLock({ running || !pending.isEmpty }) {
                let snapshot = lock.withLock { pending }
                if !snapshot.isEmpty {
                    let now = DispatchTime.now().uptimeNanoseconds
                    var seen: [(Int64, Double)] = []
                    for row in index.rows(ids: Array(snapshot.keys)) {
                        if let expected = snapshot[row.id], row.priceFrom == expected.price {
                            seen.append((row.id, Double(now - expected.since) / 1e6))
                        }
                    }
                    lock.withLock {
                        for (id, latency) in seen where pending.removeValue(forKey: id) != nil {
                            latencies.append(latency)
                        }
                    }
                }
                usleep(1_000)  // 1 ms resolution; polling faster would compete with the feed for the CPU.
            }
            done.signal()
        }
        thread.start()
    }

    /// Stops once every expected price was seen or `timeout` passed; returns the latencies.
    func finish(timeout: Duration) -> [Double] {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while lock.withLock({ !pending.isEmpty }) && clock.now < deadline { usleep(1_000) }
        lock.withLock {
            running = false
            pending.removeAll()
        }
        done.wait()
        return lock.withLock { latencies }
    }
}

/// Flushes pending writes before a latency phase: a PostgreSQL checkpoint (skipped without the right to run one),
/// then `sync()`, so neither PostgreSQL's timed checkpoint nor the kernel's writeback of dirty pages starts in
/// the middle of the phase. Only useful when the server runs on this machine, as in every run measured here.
func quiesceWrites(_ connection: PostgresConnection) {
    _ = try? connection.executeScript("CHECKPOINT")
    sync()
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `--kafka` and its options (kept apart from the cache benchmark's).
struct KafkaBenchOptions: ParsableArguments {
    @Flag(help: "Benchmark the Kafka feed instead: freshness and sustained events/s against --database-url.")
    var kafka = false

    @Option(help: ArgumentHelp(
        "PostgreSQL URL.",
        discussion: "With --kafka: a migrated, seeded database (default EXPLORE_POSTGRES_URL). With --projector: the "
            + "server to create the benchmark database on (default: a throwaway cluster)."))
    var databaseUrl: String?

    @Option(help: "Events in the sustained-rate backlog (with --kafka).")
    var kafkaEvents: Int = 100_000

    @Option(help: "Seconds each freshness rate runs (with --kafka).")
    var kafkaSeconds: Int = 10

    func validate() throws {
        if kafkaEvents < 1 { throw ValidationError("--kafka-events must be at least 1") }
        if kafkaSeconds < 1 { throw ValidationError("--kafka-seconds must be at least 1") }
    }

    /// Bench's `--listings`: with `--kafka`, the database is seeded with that many listings when it differs.
    var listings: Int? = nil

    func run() throws {
        guard let url = databaseUrl ?? ProcessInfo.processInfo.environment["EXPLORE_POSTGRES_URL"] else {
            throw ValidationError("--kafka needs --database-url URL (or EXPLORE_POSTGRES_URL)")
        }
        let figures = try KafkaBench.run(
            databaseURL: url, listings: listings, events: kafkaEvents, rates: [1_000, 5_000], secondsPerRate: kafkaSeconds)
        // The URL's password stays out of the printed command.
        let shown = (try? PostgresConfiguration(url: url).description) ?? "URL"
        let command = CommandLine.arguments.map { $0 == url ? shown : $0 }.joined(separator: " ")
        KafkaBench.print(figures, command: command)
    }
}
