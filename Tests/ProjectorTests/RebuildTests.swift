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

/// The rebuild machine's steps, pure.
@Suite struct RebuildStateMachineTests {
    typealias Machine = RebuildStateMachine

    @Test func happyPathBuildsInChunksCatchesUpSwapsAndInstallsTheCache() {
        var machine = Machine(configuration: .init(chunkSize: 100, swapThreshold: 10, maximumCatchUpRounds: 5))
        #expect(machine.phase == nil)
        #expect(machine.handle(.start) == .prepare)
        #expect(machine.phase == .building)
        #expect(machine.handle(.prepared(lowestID: 1, highestID: 250, expectedRows: 200))
            == .fill(lower: 1, upper: 101))
        #expect(machine.handle(.filled(rows: 90)) == .fill(lower: 101, upper: 201))
        #expect(machine.handle(.filled(rows: 80)) == .fill(lower: 201, upper: 251))
        #expect(machine.handle(.filled(rows: 40)) == .createIndexes)
        #expect(machine.rowsDone == 210)
        #expect(machine.rowsTotal == 210, "a total exceeded by the rows written follows them")
        #expect(machine.handle(.indexed) == .catchUp)
        #expect(machine.phase == .catchingUp)
        #expect(machine.handle(.caughtUp(touchedSince: 500)) == .catchUp)
        #expect(machine.handle(.caughtUp(touchedSince: 10)) == .swap)
        #expect(machine.phase == .swapping)
        #expect(!machine.hasSwapped)
        #expect(machine.handle(.swapped) == .contractAndLoad)
        #expect(machine.hasSwapped)
        #expect(machine.phase == .loadingCache)
        #expect(machine.handle(.loaded) == .installCache)
        #expect(machine.handle(.installed) == .finish)
        #expect(machine.isDone)
        #expect(machine.phase == nil)
        #expect(machine.swapAttempts == 1)
    }

    @Test func noListingsGoesStraightToTheIndexes() {
        var machine = Machine()
        _ = machine.handle(.start)
        #expect(machine.handle(.prepared(lowestID: nil, highestID: nil, expectedRows: 0)) == .createIndexes)
        #expect(machine.handle(.indexed) == .catchUp)
    }

    @Test func catchUpRoundsAreBoundedUnderAnEndlessWriteRate() {
        var machine = Machine(configuration: .init(swapThreshold: 0, maximumCatchUpRounds: 3))
        _ = machine.handle(.start)
        _ = machine.handle(.prepared(lowestID: 1, highestID: 1, expectedRows: 1))
        _ = machine.handle(.filled(rows: 1))
        _ = machine.handle(.indexed)
        #expect(machine.handle(.caughtUp(touchedSince: 1_000)) == .catchUp)
        #expect(machine.handle(.caughtUp(touchedSince: 1_000)) == .catchUp)
        #expect(machine.handle(.caughtUp(touchedSince: 1_000)) == .swap)
    }

    @Test func aBlockedSwapIsRetriedThenGivesUpLeavingTheLiveTable() {
        var machine = Machine(configuration: .init(maximumSwapAttempts: 3))
        _ = machine.handle(.start)
        _ = machine.handle(.prepared(lowestID: nil, highestID: nil, expectedRows: 0))
        _ = machine.handle(.indexed)
        #expect(machine.handle(.caughtUp(touchedSince: 0)) == .swap)
        #expect(machine.handle(.swapBlocked) == .swap)
        #expect(machine.handle(.swapBlocked) == .swap)
        #expect(machine.swapAttempts == 3)
        guard case .abort(let reason) = machine.handle(.swapBlocked) else {
            Issue.record("expected an abort")
            return
        }
        #expect(reason.contains("3 attempts"))
        #expect(machine.isDone)
        #expect(!machine.hasSwapped)
        #expect(machine.handle(.swapped) == .ignore, "nothing moves a failed machine")
    }

    @Test func aFeedRestartBeforeTheSwapAbortsAfterItTheFeedsOwnReloadFinishes() {
        var before = Machine()
        _ = before.handle(.start)
        _ = before.handle(.prepared(lowestID: 1, highestID: 10, expectedRows: 10))
        guard case .abort = before.handle(.feedRestarted) else {
            Issue.record("a restart before the swap must abort")
            return
        }

        var contracting = Machine()
        _ = contracting.handle(.start)
        _ = contracting.handle(.prepared(lowestID: nil, highestID: nil, expectedRows: 0))
        _ = contracting.handle(.indexed)
        _ = contracting.handle(.caughtUp(touchedSince: 0))
        _ = contracting.handle(.swapped)
        #expect(contracting.handle(.feedRestarted) == .ignore)
        #expect(contracting.handle(.loaded) == .finish, "the restarted feed loaded the new table itself")

        var installing = Machine()
        _ = installing.handle(.start)
        _ = installing.handle(.prepared(lowestID: nil, highestID: nil, expectedRows: 0))
        _ = installing.handle(.indexed)
        _ = installing.handle(.caughtUp(touchedSince: 0))
        _ = installing.handle(.swapped)
        _ = installing.handle(.loaded)
        #expect(installing.handle(.feedRestarted) == .finish)
    }

    @Test func failuresAbortAndEventsOutOfTurnAreIgnored() {
        var machine = Machine()
        #expect(machine.handle(.swapped) == .ignore)
        #expect(machine.handle(.failed("nothing runs")) == .ignore)
        _ = machine.handle(.start)
        #expect(machine.handle(.installed) == .ignore)
        #expect(machine.handle(.failed("disk full")) == .abort("disk full"))
        #expect(machine.state == .failed("disk full"))
    }

    @Test func progressReportsRateAndETA() {
        let progress = RebuildProgress(phase: .building, rowsDone: 500, rowsTotal: 1_500, elapsedSeconds: 2)
        #expect(progress.rowsPerSecond == 250)
        #expect(progress.etaSeconds == 4)
        #expect(RebuildProgress(phase: .building, rowsDone: 0, rowsTotal: nil, elapsedSeconds: 0).etaSeconds == nil)
    }
}

/// Full rebuilds against a real PostgreSQL, with the feed running.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RebuildTests {
    final class Flag: @unchecked Sendable {
        private let lock = ProjectorLock()
        private var raised = false
        func raise() { lock.withLock { raised = true } }
        var isRaised: Bool { lock.withLock { raised } }
    }

    final class Tally: @unchecked Sendable {
        private let lock = ProjectorLock()
        private var counts: [String: Int] = [:]
        private let titles = TitleLog()
        func recordTitle(_ id: Int64, _ title: String) { titles.record(id, title) }
        func lastTitles() -> [(Int64, String)] { titles.all() }
        func add(_ key: String, _ amount: Int = 1) { lock.withLock { counts[key, default: 0] += amount } }
        subscript(_ key: String) -> Int { lock.withLock { counts[key, default: 0] } }
    }

    static func driver(_ configuration: PostgresConfiguration, index: ExploreIndex = ExploreIndex(),
                       rebuild: RebuildCoordinator.Configuration? = nil) -> ProjectorDriver {
        var driverConfiguration = ProjectorDriver.Configuration(
            postgres: configuration, batching: .init(window: .milliseconds(2), maximumKeys: 200),
            pollInterval: .milliseconds(50),
            backoff: ReconnectBackoff(initial: .milliseconds(5), maximum: .milliseconds(50)))
        driverConfiguration.rebuild = rebuild
        return ProjectorDriver(configuration: driverConfiguration, index: index)
    }

    /// Waits (bounded) until the outbox is empty and the cache reflects the checkpoint.
    static func waitUntilCaughtUp(_ connection: PostgresConnection, _ driver: ProjectorDriver) throws {
        let caughtUp = try eventually(attempts: 3_000, everyMilliseconds: 10) {
            let pending = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
            let applied = try ProjectorFixtures.count(
                connection, "SELECT applied_changes FROM explore.checkpoint WHERE feed = 'explore_listings'")
            return pending == 0 && driver.status.appliedChanges == applied
        }
        if !caughtUp { Issue.record("the projector did not catch up") }
    }

    static func waitUntilBootstrapped(_ driver: ProjectorDriver) {
        eventually(attempts: 3_000, everyMilliseconds: 10) { driver.status.isBootstrapped }
    }

    static func tableOID(_ connection: PostgresConnection) throws -> Int64 {
        try ProjectorFixtures.count(connection, "SELECT 'explore.listings_projection'::regclass::oid::bigint")
    }

    /// Writers keep changing every kind of base row and readers keep searching the cache while a rebuild runs
    /// with small chunks (so chunks, catch-up rounds and batches interleave). The live table and the cache are
    /// corrupted first, so only the rebuild can make them right. Afterwards: no search failed or came back
    /// empty, the table is a new one equal to the defining query, the cache equals the table, and the changes
    /// the writers committed during the rebuild are all there.
    @Test func rebuildDuringContinuousWritesAndQueriesLosesNothing() throws {
        try ProjectorFixtures.withSeededDatabase(locations: 12, listings: 3_000) { configuration, connection in
            let index = ExploreIndex()
            let driver = Self.driver(configuration, index: index, rebuild: .init(
                postgres: configuration, machine: .init(chunkSize: 150, swapThreshold: 20)))
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            try Self.waitUntilCaughtUp(connection, driver)

            // Damage only a rebuild repairs: the table and the cache drift from the definition.
            try connection.query("UPDATE explore.listings_projection SET title = 'corrupt' WHERE id % 97 = 0")
            try connection.query("DELETE FROM explore.listings_projection WHERE id % 101 = 0")
            let before = try Self.tableOID(connection)
            #expect(!(try ProjectorFixtures.divergence(connection).table.isClean))

            let stop = Flag()
            let tally = Tally()
            let writers = (0..<4).map { writer in
                startThread { Self.write(writer, configuration: configuration, until: stop, tally: tally) }
            }
            let readers = (0..<2).map { reader in
                startThread { Self.read(reader, index: index, until: stop, tally: tally) }
            }
            // Let writes flow before, during and after the rebuild.
            #expect(eventually(attempts: 2_000, everyMilliseconds: 5) { tally["commits"] >= 20 })
            let committedBefore = tally["commits"]
            let summary = try driver.rebuild()
            let committedDuringRebuild = tally["commits"]
            #expect(committedDuringRebuild > committedBefore, "writes committed while the rebuild ran")
            #expect(eventually(attempts: 2_000, everyMilliseconds: 5) {
                tally["commits"] >= committedDuringRebuild + 20
            })
            stop.raise()
            for thread in writers + readers { pthread_join(thread, nil) }
            try Self.waitUntilCaughtUp(connection, driver)

            #expect(tally["queryFailures"] == 0)
            #expect(tally["emptyResults"] == 0, "a search during the rebuild saw an empty cache")
            #expect(tally["queries"] > 0)
            #expect(tally["commits"] > 40)
            #expect(summary.rows > 2_000)
            #expect(summary.version == ProjectionQuery.shipped.version)
            #expect(try Self.tableOID(connection) != before, "the table was swapped for a new one")
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean, "table vs definition: \(table)")
            #expect(table.pending.isEmpty)
            #expect(cache?.isClean == true, "cache vs table: \(String(describing: cache))")
            // Every writer's last committed title is in the cache: nothing it wrote was lost.
            for (id, title) in tally.lastTitles() {
                let row = index.rows(ids: [id]).first
                let status = try connection.query("SELECT status FROM property.listings WHERE id = $1", [id])
                guard let liveStatus = status.first?[0], ["published", "active"].contains(liveStatus) else { continue }
                #expect(row?.title == title, "listing \(id)")
            }
            #expect(driver.status.rebuild == nil)
            #expect(try ProjectorFixtures.count(connection, """
                SELECT count(*) FROM pg_class WHERE relnamespace = 'explore'::regnamespace
                AND relname IN ('listings_projection_rebuild', 'listings_projection_old')
                """) == 0, "the side and old tables are gone")
        }
    }

    /// Split batches beside a rebuild: a writer renames a seventh of the listings per transaction (listing rows
    /// only, so every batch is split over the two apply connections) before, during and after a rebuild whose swap
    /// renames the table the partner's prepared statements read. Afterwards the table equals the definition and
    /// the cache equals the table.
    @Test func splitBatchesBesideARebuildLoseNothing() throws {
        try ProjectorFixtures.withSeededDatabase(listings: 1_000) { configuration, connection in
            let index = ExploreIndex()
            var driverConfiguration = ProjectorDriver.Configuration(
                postgres: configuration, batching: .init(window: .milliseconds(2), maximumKeys: 500),
                pollInterval: .milliseconds(50),
                backoff: ReconnectBackoff(initial: .milliseconds(5), maximum: .milliseconds(50)))
            driverConfiguration.rebuild = .init(
                postgres: configuration, machine: .init(chunkSize: 100, swapThreshold: 20))
            driverConfiguration.splitMinimumKeys = 2
            let driver = ProjectorDriver(configuration: driverConfiguration, index: index)
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            try Self.waitUntilCaughtUp(connection, driver)

            let stop = Flag()
            let tally = Tally()
            let writer = startThread {
                guard let writing = try? PostgresConnection.connect(configuration) else {
                    tally.add("writerConnectFailures")
                    return
                }
                defer { writing.close() }
                var round = 0
                while !stop.isRaised && round < 100_000 {
                    round += 1
                    do {
                        try writing.query("UPDATE property.listings SET title = 'Round ' || $1 WHERE id % 7 = $2",
                                          [round, round % 7])
                        tally.add("commits")
                    } catch {
                        tally.add("writeFailures")
                    }
                }
            }
            #expect(eventually(attempts: 2_000, everyMilliseconds: 5) { tally["commits"] >= 5 })
            let committedBefore = tally["commits"]
            // The writer outpaces the feed, so the feed never runs out of entries to read; the rebuild must still
            // get its swap in (it once waited for the writers to pause). Stopping the writer lets a starved rebuild
            // end, so a failure here costs seconds, not the suite's time limit.
            let rebuilt = Tally()
            let rebuilder = startThread {
                if let summary = try? driver.rebuild() { rebuilt.add("rows", Int(summary.rows)) }
                rebuilt.add("done")
            }
            let finished = eventually(attempts: 3_000, everyMilliseconds: 10) { rebuilt["done"] == 1 }
            #expect(finished, "the rebuild finished while the writer kept writing")
            #expect(tally["commits"] > committedBefore, "writes committed while the rebuild ran")
            stop.raise()
            pthread_join(rebuilder, nil)
            pthread_join(writer, nil)
            try Self.waitUntilCaughtUp(connection, driver)

            #expect(tally["writeFailures"] == 0 && tally["writerConnectFailures"] == 0)
            #expect(rebuilt["rows"] > 500)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty, "table vs definition: \(table)")
            #expect(cache?.isClean == true, "cache vs table: \(String(describing: cache))")
        }
    }

    /// The new table carries the old one's indexes (same names and definitions), primary key, checks, storage
    /// options (the fillfactor HOT updates need), owner and grants: SQL readers keep their plans and privileges.
    @Test func swapKeepsIndexesConstraintsAndGrants() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            func catalog() throws -> [String] {
                let indexes = try connection.query("""
                    SELECT indexname || ': ' || indexdef FROM pg_indexes
                    WHERE schemaname = 'explore' AND tablename = 'listings_projection' ORDER BY 1
                    """).map { $0[0] ?? "" }
                let constraints = try connection.query("""
                    SELECT conname || ' ' || contype::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
                    WHERE conrelid = 'explore.listings_projection'::regclass ORDER BY 1
                    """).map { $0[0] ?? "" }
                let options = try connection.query("""
                    SELECT 'options ' || coalesce(array_to_string(reloptions, ','), '') FROM pg_class
                    WHERE oid = 'explore.listings_projection'::regclass
                    """).map { $0[0] ?? "" }
                let privileges = try connection.query("""
                    SELECT has_table_privilege('explore_reader', 'explore.listings_projection', 'SELECT')::text
                        || has_table_privilege('explore_projector', 'explore.listings_projection', 'INSERT')::text
                        || has_table_privilege('explore_reader', 'explore.listings_projection', 'INSERT')::text
                        || pg_get_userbyid(relowner)
                    FROM pg_class WHERE oid = 'explore.listings_projection'::regclass
                    """).map { $0[0] ?? "" }
                return indexes + constraints + options + privileges
            }
            let driver = Self.driver(configuration)
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            let before = try catalog()
            #expect(before.count >= 7)
            #expect(before.last?.hasPrefix("truetruefalse") == true, "\(before)")
            #expect(before.contains("options fillfactor=85"), "\(before)")
            let oid = try Self.tableOID(connection)
            _ = try driver.rebuild()
            #expect(try Self.tableOID(connection) != oid)
            #expect(try catalog() == before)
            // The feed keeps working on the new table.
            try connection.query("UPDATE property.listings SET title = 'after the swap' WHERE id = 3")
            try Self.waitUntilCaughtUp(connection, driver)
            #expect(driver.index.rows(ids: [3]).first?.title == "after the swap")
            #expect(try ProjectorFixtures.divergence(connection, cache: driver.index).table.isClean)
        }
    }

    /// A reader holding the live table's lock makes the swap time out and retry; once it lets go the swap goes
    /// through. No one waits for the swap longer than one lock timeout.
    @Test func aBlockedSwapRetriesUntilTheReaderLetsGo() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            let driver = Self.driver(configuration, rebuild: .init(
                postgres: configuration, lockTimeout: .milliseconds(20)))
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)

            let holding = Flag()
            let released = Flag()
            let holder = startThread {
                guard let reader = try? PostgresConnection.connect(configuration) else { return }
                defer { reader.close() }
                guard (try? reader.executeScript("BEGIN; SELECT count(*) FROM explore.listings_projection")) != nil
                else { return }
                holding.raise()
                // Hold the lock until the rebuild tries to swap (bounded), a little longer, then commit.
                eventually(attempts: 6_000, everyMilliseconds: 5) { driver.status.rebuild?.phase == .swapping }
                ProjectorFixtures.sleepMilliseconds(300)
                try? reader.executeScript("COMMIT")
                released.raise()
            }
            eventually(attempts: 1_000, everyMilliseconds: 5) { holding.isRaised }
            #expect(holding.isRaised)
            let summary = try driver.rebuild()
            pthread_join(holder, nil)
            #expect(released.isRaised)
            #expect(summary.swapAttempts > 1)
            #expect(try ProjectorFixtures.divergence(connection, cache: driver.index).table.isClean)
        }
    }

    /// A table built with another projection version is rebuilt in the background on start, while the old one
    /// is served; the new version is recorded with the swap. A second rebuild asked for meanwhile is refused.
    @Test func versionUpgradeOnStart() throws {
        try ProjectorFixtures.withSeededDatabase(listings: 600) { configuration, connection in
            do {
                let first = Self.driver(configuration)
                first.start()
                Self.waitUntilBootstrapped(first)
                try Self.waitUntilCaughtUp(connection, first)
                // The feed records the version of a table it built on its first pass between batches.
                try eventually(attempts: 3_000, everyMilliseconds: 10) { try RebuildStore.state(on: connection) != nil }
                first.stop()
            }
            #expect(try RebuildStore.state(on: connection)?.version == ProjectionQuery.shipped.version,
                    "a fresh build records the shipped version")
            // Pretend an older definition built this table: version 0, and rows that differ from today's query.
            try connection.query("UPDATE explore.projection_state SET version = 0")
            try connection.query("UPDATE explore.listings_projection SET title = upper(title)")
            let oid = try Self.tableOID(connection)

            let index = ExploreIndex()
            let driver = Self.driver(configuration, index: index)
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            let upgraded = try eventually(attempts: 3_000, everyMilliseconds: 10) {
                try RebuildStore.state(on: connection)?.version == ProjectionQuery.shipped.version
                    && !driver.rebuildCoordinator.isRunning
            }
            #expect(upgraded)
            #expect(driver.rebuildCoordinator.lastError == nil)
            #expect(try Self.tableOID(connection) != oid)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean)
            #expect(cache?.isClean == true)
        }
    }

    /// A rebuild asked for through the state table (by `explore-projector rebuild --database-url` while a
    /// projector runs) is taken up by the running projector.
    @Test func aRequestInTheStateTableIsTakenUpByTheRunningProjector() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            let driver = Self.driver(configuration, rebuild: .init(
                postgres: configuration, requestPollInterval: .milliseconds(20)))
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            let oid = try Self.tableOID(connection)
            try RebuildStore.requestRebuild(on: connection)
            let finished = try eventually(attempts: 3_000, everyMilliseconds: 10) {
                let row = try connection.query("""
                    SELECT rebuild_requested_at IS NULL AND rebuild_finished_at >= rebuild_started_at, rebuild_error
                    FROM explore.projection_state
                    """).first
                guard row?[0] == "t" else { return false }
                #expect(row?[1] == nil)
                return true
            }
            #expect(finished)
            #expect(try Self.tableOID(connection) != oid)
        }
    }

    /// TRUNCATE fires no capture trigger, so no outbox entry tells the projector what went; the rebuild the
    /// truncate requests (migration 0016) is what brings the table and the cache in line with the base tables.
    @Test func aTruncatedBaseTableIsRebuiltFrom() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            let index = ExploreIndex()
            let driver = Self.driver(configuration, index: index, rebuild: .init(
                postgres: configuration, requestPollInterval: .milliseconds(20)))
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            func cachedImages() -> Int { index.rows(ids: index.listingIDs()).filter { $0.primaryImageURL != nil }.count }
            let imagesInTable = "SELECT count(*) FROM explore.listings_projection WHERE primary_image_url IS NOT NULL"
            #expect(cachedImages() > 0)
            try connection.executeScript("TRUNCATE property.media")
            let gone = try eventually(attempts: 1_500, everyMilliseconds: 20) {
                try ProjectorFixtures.count(connection, imagesInTable) == 0 && cachedImages() == 0
            }
            #expect(gone)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && cache?.isClean == true)
        }
    }

    /// The feed fails a batch (and restarts its session) while the side table is being filled: the changes it
    /// applied meanwhile may be unknown to the rebuild, so the rebuild gives up cleanly: the live table stays,
    /// the side table is dropped, the failure is recorded, and the next rebuild succeeds.
    @Test func aFeedRestartDuringTheBuildAbortsCleanly() throws {
        try ProjectorFixtures.withSeededDatabase(listings: 3_000) { configuration, connection in
            let failNextBatch = Flag()
            let failed = Flag()
            var driverConfiguration = ProjectorDriver.Configuration(
                postgres: configuration, batching: .init(window: .milliseconds(1), maximumKeys: 50),
                pollInterval: .milliseconds(20),
                backoff: ReconnectBackoff(initial: .milliseconds(5), maximum: .milliseconds(20)),
                beforeCommit: {
                    struct InjectedCrash: Error {}
                    if failNextBatch.isRaised && !failed.isRaised {
                        failed.raise()
                        throw InjectedCrash()
                    }
                })
            driverConfiguration.rebuild = .init(postgres: configuration, machine: .init(chunkSize: 10))
            let driver = ProjectorDriver(configuration: driverConfiguration, index: ExploreIndex())
            driver.start()
            defer { driver.stop() }
            Self.waitUntilBootstrapped(driver)
            let oid = try Self.tableOID(connection)

            let stop = Flag()
            let tally = Tally()
            let writer = startThread { Self.write(0, configuration: configuration, until: stop, tally: tally) }
            let saboteur = startThread {
                eventually(attempts: 6_000, everyMilliseconds: 1) { driver.status.rebuild?.phase == .building }
                failNextBatch.raise()
            }
            var outcome: ProjectorError?
            do throws(ProjectorError) {
                _ = try driver.rebuild()
            } catch {
                outcome = error
            }
            pthread_join(saboteur, nil)
            stop.raise()
            pthread_join(writer, nil)
            #expect(failed.isRaised)
            #expect(outcome?.code == .rebuildFailed)
            #expect(outcome?.message.contains("restarted") == true, "\(String(describing: outcome))")
            #expect(try Self.tableOID(connection) == oid, "the live table was not touched")
            #expect(try ProjectorFixtures.count(connection, """
                SELECT count(*) FROM pg_class WHERE relname = 'listings_projection_rebuild'
                """) == 0)
            #expect(try connection.query("SELECT rebuild_error FROM explore.projection_state").first?[0] != nil)

            let summary = try driver.rebuild()
            #expect(summary.rows > 2_000)
            try Self.waitUntilCaughtUp(connection, driver)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: driver.index)
            #expect(table.isClean)
            #expect(cache?.isClean == true)
        }
    }

    // MARK: Load

    private static func write(_ writer: Int, configuration: PostgresConfiguration, until stop: Flag, tally: Tally) {
        var generator = SplitMix64(seed: UInt64(writer + 11) &* 104_729)
        guard let connection = try? PostgresConnection.connect(configuration) else {
            tally.add("writerConnectFailures")
            return
        }
        defer { connection.close() }
        var rounds = 0
        while !stop.isRaised && rounds < 100_000 {
            rounds += 1
            let listing = Int64(1 + generator.next() % 3_000)
            do {
                switch generator.next() % 6 {
                case 0, 1:
                    let title = "Title \(writer)-\(rounds)"
                    try connection.query("UPDATE property.listings SET title = $2 WHERE id = $1", [listing, title])
                    tally.recordTitle(listing, title)
                case 2:
                    try connection.transaction {
                        try connection.query(
                            "UPDATE property.existing_properties SET price = price + 1 WHERE listing_id = $1",
                            [listing])
                        try connection.query(
                            "UPDATE property.developments SET price_to = price_to + 1 WHERE listing_id = $1", [listing])
                    }
                case 3:
                    try connection.transaction {
                        try connection.query("DELETE FROM property.media WHERE listing_id = $1", [listing])
                        try connection.query("""
                            INSERT INTO property.media (listing_id, url, is_primary, position) VALUES ($1, $2, true, 0)
                            """, [listing, "https://img.example.com/\(writer)/\(rounds).jpg"])
                    }
                case 4:
                    // One location only: a location change recomputes every listing there, which would also
                    // repair a rebuild that lost changes elsewhere and hide the loss.
                    let location: Int64 = 1
                    try connection.query("UPDATE property.locations SET area = $2 WHERE id = $1",
                                         [location, "Area \(location) v\(writer)-\(rounds)"])
                default:
                    let status = ["draft", "published", "active", "archived"][Int(generator.next() % 4)]
                    try connection.query("UPDATE property.listings SET status = $2 WHERE id = $1", [listing, status])
                }
                tally.add("commits")
            } catch {
                tally.add("writeFailures")
            }
            usleep(useconds_t(generator.next() % 2_000))
        }
    }

    private static func read(_ reader: Int, index: ExploreIndex, until stop: Flag, tally: Tally) {
        var rounds = 0
        while !stop.isRaised && rounds < 1_000_000 {
            rounds += 1
            do {
                let query = SearchQuery(sort: reader == 0 ? .newest : .priceAscending, limit: 50)
                let result = try index.search(query)
                if result.rows.isEmpty || (result.total ?? 0) < 1_000 { tally.add("emptyResults") }
                tally.add("queries")
            } catch {
                tally.add("queryFailures")
            }
        }
    }
}

/// The last title each listing was given, keeping only listings a single writer titled (one writer's updates
/// commit in the order it records them).
final class TitleLog: @unchecked Sendable {
    private let lock = ProjectorLock()
    private var titles: [Int64: (writer: String, title: String)] = [:]
    private var shared = Set<Int64>()

    func record(_ id: Int64, _ title: String) {
        let writer = String(title.split(separator: "-").first ?? "")
        lock.withLock {
            if let previous = titles[id], previous.writer != writer { shared.insert(id) }
            titles[id] = (writer, title)
        }
    }

    func all() -> [(Int64, String)] {
        lock.withLock { titles.filter { !shared.contains($0.key) }.map { ($0.key, $0.value.title) } }
    }
}
