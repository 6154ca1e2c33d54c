import DemoData
import ExploreQuery
import Postgres
@testable import Projector
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The driver under concurrent writers committing out of order, with injected failures and a restart.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProjectorDriverTests {
    /// A counter shared by threads.
    final class Counter: @unchecked Sendable {
        private let lock = ProjectorLock()
        private var value: Int64 = 0
        func add(_ amount: Int64) -> Int64 { lock.withLock { value += amount; return value } }
        var current: Int64 { lock.withLock { value } }
    }

    /// Whether some writer saw, just before its COMMIT, a committed outbox entry with a higher id than its own:
    /// that entry's transaction committed first although its ids are higher, which is exactly the trap.
    final class CommitLog: @unchecked Sendable {
        private let lock = ProjectorLock()
        private var inversions = 0
        func recordInversion() { lock.withLock { inversions += 1 } }
        var hasOutOfOrderCommit: Bool { lock.withLock { inversions > 0 } }
    }

    /// 32 writer threads, each with its own connection, run random multi-statement transactions with random
    /// pauses inside them, so commits interleave and land out of outbox-id order. Meanwhile the projector runs
    /// with a failure injected before every 7th COMMIT, and is stopped and replaced by a fresh one (new cache,
    /// restart from the checkpoint) halfway. Afterwards: no divergence, the cache equals the table, and the
    /// checkpoint counted every committed outbox entry exactly once. With 3 apply connections, every batch of two
    /// listings or more is split, and the failures also hit parts committing beside the others.
    @Test(arguments: [1, 3])
    func concurrentWritersOutOfOrderWithFailuresAndARestart(applyConnections: Int) throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            let seedEntries = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")

            let attempts = Counter()
            let failing: @Sendable () throws -> Void = {
                struct InjectedCrash: Error {}
                if attempts.add(1) % 7 == 0 { throw InjectedCrash() }
            }
            func makeDriver() -> ProjectorDriver {
                var driverConfiguration = ProjectorDriver.Configuration(
                    postgres: configuration, batching: .init(window: .milliseconds(2), maximumKeys: 64),
                    pollInterval: .milliseconds(50), pageSize: 50,
                    backoff: ReconnectBackoff(initial: .milliseconds(5), maximum: .milliseconds(20)),
                    beforeCommit: failing)
                driverConfiguration.applyConnections = applyConnections
                driverConfiguration.splitMinimumKeys = 2
                return ProjectorDriver(configuration: driverConfiguration, index: ExploreIndex())
            }
            var driver = makeDriver()
            driver.start()

            let committedEntries = Counter()
            let writerFailures = Counter()
            let commits = CommitLog()
            let writers = (0..<32).map { writer in
                startThread {
                    runWriter(writer, configuration: configuration, committed: committedEntries,
                              failures: writerFailures, commits: commits)
                }
            }
            // Halfway through the writers' work, replace the projector by a fresh one.
            ProjectorFixtures.sleepMilliseconds(400)
            driver.stop()
            driver = makeDriver()
            driver.start()
            for writer in writers { pthread_join(writer, nil) }

            // Wait (bounded) until the outbox is drained and the cache has caught up with the checkpoint.
            let caughtUp = try eventually(attempts: 600, everyMilliseconds: 50) {
                let pending = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
                let checkpoint = try ProjectionStore.checkpoint(on: connection)
                return pending == 0 && driver.status.appliedChanges == checkpoint.appliedChanges
            }
            driver.stop()
            #expect(caughtUp)
            let status = driver.status
            #expect(status.isBootstrapped && status.batches > 0)
            // Every batch has a transaction and a cache step, each taking some time.
            #expect(status.databaseSeconds > 0 && status.cacheSeconds > 0)
            #expect(status.databaseSeconds < 600 && status.cacheSeconds < 600)
            #expect(attempts.current >= 7)

            // The run must contain the trap: a transaction with lower outbox ids committing after a higher one.
            #expect(commits.hasOutOfOrderCommit)
            let checkpoint = try ProjectionStore.checkpoint(on: connection)
            #expect(committedEntries.current > 500)
            #expect(checkpoint.appliedChanges == seedEntries + committedEntries.current)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: driver.index)
            #expect(table.isClean && table.pending.isEmpty)
            #expect(cache?.isClean == true)
            #expect(table.compared > 100)
        }
    }

    /// The notification only wakes the driver: an outbox entry committed without one is still applied, by the
    /// poll. And a second projector on the same feed is refused while the first holds it.
    @Test func pollingCatchesChangesWithoutNotificationAndASecondProjectorIsRefused() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            let driver = ProjectorDriver(
                configuration: .init(postgres: configuration, pollInterval: .milliseconds(30)), index: ExploreIndex())
            driver.start()
            defer { driver.stop() }
            eventually(attempts: 400, everyMilliseconds: 10) { driver.status.isBootstrapped }
            #expect(driver.status.isBootstrapped)

            // Change a base table with the triggers switched off, then append the entry by hand: no NOTIFY.
            try connection.executeScript("""
                BEGIN;
                SET LOCAL session_replication_role = replica;
                UPDATE property.listings SET title = 'silent' WHERE id = 3;
                INSERT INTO explore.change_outbox (source, key) VALUES ('listings', 3);
                COMMIT;
                """)
            let seen = eventually(attempts: 400, everyMilliseconds: 10) {
                driver.index.rows(ids: [3]).first?.title == "silent"
            }
            #expect(seen)

            let second = ProjectorDriver(
                configuration: .init(
                    postgres: configuration, pollInterval: .milliseconds(30),
                    backoff: ReconnectBackoff(initial: .milliseconds(5), maximum: .milliseconds(10))),
                index: ExploreIndex())
            second.start()
            eventually(attempts: 400, everyMilliseconds: 10) { second.status.failures >= 2 }
            second.stop()
            #expect(second.status.failures >= 2)
            #expect(!second.status.isBootstrapped)
            #expect(second.index.count == 0)
        }
    }

    /// A batch is split by listing across the apply connections, and the parts commit before the part that moves
    /// the feed position. That last part fails once here, after the others committed: the window is read again,
    /// finds only the failed part's entries, and nothing is lost or counted twice.
    @Test func splitBatchSurvivesItsLastPartFailingAfterTheOthersCommitted() throws {
        try ProjectorFixtures.withSeededDatabase(listings: 600) { configuration, connection in
            final class Probe: @unchecked Sendable {
                private let lock = ProjectorLock()
                private var calls = 0
                private var armed = false
                private var leftAtFailure: Int64?
                let connection: PostgresConnection
                init(_ connection: PostgresConnection) { self.connection = connection }
                func arm() { lock.withLock { armed = true } }
                /// Outbox entries left when the last part of the armed batch was about to commit.
                var left: Int64? { lock.withLock { leftAtFailure } }
                var failed: Bool { left != nil }
                /// Fails the third commit after arming: the two other parts (on the partner connections) come first,
                /// as the last part waits for them before it even updates the checkpoint.
                func beforeCommit() throws {
                    struct InjectedCrash: Error {}
                    let fail = lock.withLock { () -> Bool in
                        guard armed else { return false }
                        calls += 1
                        return calls == 3
                    }
                    guard fail else { return }
                    let left = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
                    lock.withLock { leftAtFailure = left }
                    throw InjectedCrash()
                }
            }
            let probeConnection = try PostgresConnection.connect(configuration)
            defer { probeConnection.close() }
            let probe = Probe(probeConnection)
            var driverConfiguration = ProjectorDriver.Configuration(
                postgres: configuration, pollInterval: .milliseconds(30),
                backoff: ReconnectBackoff(initial: .milliseconds(5), maximum: .milliseconds(20)),
                beforeCommit: { try probe.beforeCommit() })
            driverConfiguration.applyConnections = 3
            driverConfiguration.splitMinimumKeys = 2
            let driver = ProjectorDriver(configuration: driverConfiguration, index: ExploreIndex())
            driver.start()
            defer { driver.stop() }
            func caughtUp() throws -> Bool {
                let pending = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
                let checkpoint = try ProjectionStore.checkpoint(on: connection)
                return pending == 0 && driver.status.appliedChanges == checkpoint.appliedChanges
            }
            #expect(eventually(attempts: 400, everyMilliseconds: 10) { driver.status.isBootstrapped })
            #expect(try eventually(attempts: 400, everyMilliseconds: 10) { try caughtUp() })
            let before = try ProjectionStore.checkpoint(on: connection).appliedChanges
            probe.arm()

            // One transaction renames 400 listings: one window, one batch, three parts.
            let ids = try Self.renameListings(400, on: connection)
            #expect(try eventually(attempts: 600, everyMilliseconds: 10) { try probe.failed && caughtUp() })

            // When the last part failed, the other two had consumed their entries: about two thirds of them.
            let left = try #require(probe.left)
            #expect(left > 50 && left < 250)
            #expect(driver.status.failures == 1)
            #expect(try ProjectionStore.checkpoint(on: connection).appliedChanges == before + 400)
            let rows = driver.index.rows(ids: ids)
            #expect(rows.count == 400 && rows.allSatisfy { $0.title.hasSuffix(" (renamed)") })
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: driver.index)
            #expect(table.isClean && table.pending.isEmpty)
            #expect(cache?.isClean == true)
        }
    }

    /// A backlog larger than a batch is applied in batches of at most `maximumKeys` listings, although one read
    /// could return a whole page of it.
    @Test func noBatchPassesItsKeyLimit() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            final class Sizes: @unchecked Sendable {
                private let lock = ProjectorLock()
                private var sizes: [Int] = []
                func record(_ size: Int) { lock.withLock { sizes.append(size) } }
                var all: [Int] { lock.withLock { sizes } }
            }
            let sizes = Sizes()
            let driver = ProjectorDriver(
                configuration: .init(
                    postgres: configuration, batching: .init(window: .milliseconds(50), maximumKeys: 7),
                    pollInterval: .milliseconds(30), pageSize: 50,
                    afterApply: { sizes.record($0.changes.count) }),
                index: ExploreIndex())
            driver.start()
            defer { driver.stop() }
            #expect(eventually(attempts: 400, everyMilliseconds: 10) { driver.status.isBootstrapped })

            // One transaction renames 40 listings: 40 entries, each its own listing.
            let ids = try Self.renameListings(40, on: connection)
            let changed = ids.count
            let renamed = eventually(attempts: 400, everyMilliseconds: 10) {
                sizes.all.reduce(0, +) >= changed
            }
            #expect(renamed)
            #expect(sizes.all.reduce(0, +) == changed)
            #expect(sizes.all.allSatisfy { $0 <= 7 })
            #expect(sizes.all.count >= 6)
            let rows = driver.index.rows(ids: ids)
            #expect(rows.count == 40 && rows.allSatisfy { $0.title.hasSuffix(" (renamed)") })
        }
    }
}

extension ProjectorDriverTests {
    /// Appends " (renamed)" to the titles of the first `count` listings the read model serves, in one transaction
    /// (one outbox entry each); returns their ids.
    static func renameListings(_ count: Int, on connection: PostgresConnection) throws -> [Int64] {
        let ids = try connection.query("SELECT id FROM explore.listings_projection ORDER BY id LIMIT $1", [count])
            .compactMap { $0[0].flatMap { Int64($0) } }
        let changed = try connection.query(
            "UPDATE property.listings SET title = title || ' (renamed)' WHERE id = ANY($1::bigint[])",
            [ProjectionStore.int8Array(ids)]).affectedRows
        #expect(ids.count == count && changed == count)
        return ids
    }
}

/// Starts a joinable thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    var handle = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let created = pthread_create(&handle, nil, { argument in
        Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
        return nil
    }, box)
    precondition(created == 0)
    return handle
}

/// One writer: 12 random transactions, each of 1–3 statements with pauses inside, counting the outbox entries
/// of the transactions that commit.
private func runWriter(
    _ writer: Int, configuration: PostgresConfiguration, committed: ProjectorDriverTests.Counter,
    failures: ProjectorDriverTests.Counter, commits: ProjectorDriverTests.CommitLog
) {
    var generator = SplitMix64(seed: UInt64(writer + 1) &* 7919)
    guard let connection = try? PostgresConnection.connect(configuration) else {
        _ = failures.add(1)
        return
    }
    defer { connection.close() }
    var created: [Int64] = []
    for _ in 0..<12 {
        do {
            try connection.executeScript("BEGIN")
            for _ in 0..<(1 + Int(generator.next() % 3)) {
                let listing = Int64(1 + generator.next() % 120)
                switch generator.next() % 8 {
                case 0:
                    try connection.query("UPDATE property.listings SET title = $2, updated_at = now() WHERE id = $1",
                                         [listing, "Title \(writer)-\(generator.next() % 1000)"])
                case 1:
                    let status = ["draft", "published", "active", "archived"][Int(generator.next() % 4)]
                    try connection.query("UPDATE property.listings SET status = $2 WHERE id = $1", [listing, status])
                case 2:
                    try connection.query("UPDATE property.existing_properties SET price = price + 1 WHERE listing_id = $1",
                                         [listing])
                    try connection.query("UPDATE property.developments SET price_to = price_to + 1 WHERE listing_id = $1",
                                         [listing])
                case 3:
                    try connection.query("DELETE FROM property.media WHERE listing_id = $1", [listing])
                    try connection.query("""
                        INSERT INTO property.media (listing_id, url, is_primary, position)
                        VALUES ($1, $2, true, 0)
                        """, [listing, "https://img.example.com/\(writer)/\(generator.next() % 1000).jpg"])
                case 4:
                    let location = Int64(1 + generator.next() % 6)
                    try connection.query("UPDATE property.locations SET area = $2 WHERE id = $1",
                                         [location, "Area \(location) v\(writer)-\(generator.next() % 1000)"])
                case 5, 6:
                    let id = try connection.query("""
                        INSERT INTO property.listings (type, status, title, location_id, owner_user_id)
                        VALUES ('existing', 'published', $1, $2, 1) RETURNING id
                        """, ["New \(writer)", Int64(1 + generator.next() % 6)]).first?.decode(0, as: Int64.self)
                    if let id {
                        try connection.query("""
                            INSERT INTO property.existing_properties (listing_id, price, bedrooms, bathrooms)
                            VALUES ($1, 1000, 1, 1)
                            """, [id])
                        created.append(id)
                    }
                default:
                    if let id = created.popLast() {
                        try connection.query("DELETE FROM property.listings WHERE id = $1", [id])
                    }
                }
                usleep(useconds_t(generator.next() % 4_000))
            }
            let mine = try connection.query(
                "SELECT count(*), min(id) FROM explore.change_outbox WHERE xid = pg_current_xact_id()")
            let entries = try mine.first?.decode(0, as: Int64.self) ?? 0
            if let lowestID = try mine.first?.decode(1, as: Int64?.self) ?? nil {
                // Rows of other transactions visible here have committed; the projector may have pruned some, so
                // this can miss an inversion but never invent one.
                let overtaken = try connection.query(
                    "SELECT EXISTS (SELECT 1 FROM explore.change_outbox WHERE id > $1 AND xid <> pg_current_xact_id())",
                    [lowestID]).first?.decode(0, as: Bool.self) ?? false
                if overtaken { commits.recordInversion() }
            }
            usleep(useconds_t(generator.next() % 4_000))
            try connection.executeScript("COMMIT")
            _ = committed.add(entries)
        } catch {
            // Deadlocks and unique violations between writers are expected; the transaction rolled back.
            try? connection.executeScript("ROLLBACK")
            _ = failures.add(1)
        }
    }
}
