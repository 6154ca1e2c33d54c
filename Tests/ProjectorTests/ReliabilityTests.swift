import DemoData
import ExploreQuery
import Migrations
import Postgres
@testable import Projector
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `explore-projector` executable next to the test bundle (`swift build` builds it).
private let projectorExecutable = BuiltExecutable.path("explore-projector")

/// The projector against a real PostgreSQL under the conditions production brings: many writers committing out
/// of order, the projector killed with SIGKILL, the server restarted, rows that violate the projection's
/// expectations. Every test ends with the same proof: the table equals the defining query, the cache equals the
/// table, and every committed outbox entry was applied exactly once.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ReliabilityTests {
    /// A migrated database with demo data, its projection built; returns the checkpoint's count after the build.
    private static func prepare(_ configuration: PostgresConfiguration, listings: Int = 3_000) throws -> Int64 {
        try ProjectorFixtures.migrate(configuration)
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        try DemoSeeder.seed(DemoDataset(listings: listings, seed: 5), into: connection)
        try ReliabilityWorkload.prepare(connection)
        try ProjectionStore.buildIfNeeded(on: connection)
        return try ProjectionStore.checkpoint(on: connection).appliedChanges
    }

    private static func driver(
        _ configuration: PostgresConfiguration, pageSize: Int = 40, maximumKeys: Int = 48
    ) -> ProjectorDriver {
        ProjectorDriver(
            configuration: .init(
                postgres: configuration, batching: .init(window: .milliseconds(1), maximumKeys: maximumKeys),
                pollInterval: .milliseconds(50), pageSize: pageSize,
                backoff: ReconnectBackoff(initial: .milliseconds(10), maximum: .milliseconds(100))),
            index: ExploreIndex())
    }

    /// Waits (bounded, about 60 s) until the outbox is empty and `caughtUp` holds; returns whether it did.
    private static func waitUntilDrained(
        _ connection: PostgresConnection, _ caughtUp: (ProjectionStore.Checkpoint) -> Bool = { _ in true }
    ) throws -> Bool {
        try eventually(attempts: 1_200, everyMilliseconds: 50) {
            let pending = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
            return try pending == 0 && caughtUp(ProjectionStore.checkpoint(on: connection))
        }
    }

    /// Waits (bounded) until the checkpoint has counted at least `entries` more applied entries than `base`.
    private static func waitForProgress(_ connection: PostgresConnection, beyond base: Int64, entries: Int64) throws
        -> Bool
    {
        try eventually(attempts: 1_200, everyMilliseconds: 25) {
            try ProjectionStore.checkpoint(on: connection).appliedChanges >= base + entries
        }
    }

    /// The table equals the defining query, the checkpoint counted every committed entry exactly once, and (when
    /// given) the cache equals the table, as does a cache freshly bootstrapped from it by COPY.
    private static func expectConverged(
        _ connection: PostgresConnection, built: Int64, cache: ExploreIndex?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (table, cacheReport) = try ProjectorFixtures.divergence(connection, cache: cache)
        #expect(table.isClean, "table diverges: \(table)", sourceLocation: sourceLocation)
        #expect(table.pending.isEmpty, sourceLocation: sourceLocation)
        #expect(table.compared > 1_000, sourceLocation: sourceLocation)
        if let cacheReport {
            #expect(cacheReport.isClean, "cache diverges: \(cacheReport)", sourceLocation: sourceLocation)
        }
        let (fresh, checkpoint) = try ProjectionStore.loadCache(on: connection)
        let rows = try ProjectionStore.copyProjectionRows(on: connection)
        #expect(ProjectionVerifier.compare(cache: ExploreIndex(store: fresh), with: rows).isClean,
                sourceLocation: sourceLocation)
        let committed = try ReliabilityWorkload.committedEntries(connection)
        #expect(committed > 0, sourceLocation: sourceLocation)
        #expect(checkpoint.appliedChanges == built + committed,
                "applied \(checkpoint.appliedChanges), built \(built) + committed \(committed)",
                sourceLocation: sourceLocation)
    }

    // MARK: (a) out-of-order commits

    /// 40 writers commit out of order while the projector follows with small pages and batches, so windows are
    /// read in many pages and batches split them. The run must contain out-of-order commits.
    @Test func concurrentWritersCommittingOutOfOrder() throws {
        try TestPostgres.withDatabase { configuration in
            let built = try Self.prepare(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let driver = Self.driver(configuration, pageSize: 25, maximumKeys: 32)
            driver.start()
            defer { driver.stop() }

            let workload = ReliabilityWorkload(
                configuration: configuration, options: .init(writers: 40, transactionsPerWriter: 25, seed: 1))
            try workload.start()
            let outcome = workload.wait()
            #expect(outcome.commits > 400)
            #expect(outcome.inversions > 0, "no commit landed out of outbox-id order: the test proves nothing")

            let drained = try Self.waitUntilDrained(connection) { driver.status.appliedChanges == $0.appliedChanges }
            #expect(drained)
            driver.stop()
            #expect(driver.status.batches > 10)
            try Self.expectConverged(connection, built: built, cache: driver.index)
        }
    }

    // MARK: (b) SIGKILL

    /// `explore-projector serve` runs as a child process while 32 writers run; it is killed with SIGKILL twice
    /// mid-stream and restarted. Afterwards the service's own VERIFY (cache and table), `explore-projector verify`
    /// and a direct check all find no divergence, and every committed entry was applied exactly once.
    @Test func projectorKilledWithSIGKILLAndRestarted() throws {
        guard let executable = projectorExecutable else {
            Issue.record("explore-projector is not built next to the tests: run swift build first")
            return
        }
        try TestPostgres.withDatabase { configuration in
            let built = try Self.prepare(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let work = try ChildProcess.temporaryDirectory(prefix: "explore-reliability")
            let tokenFile = work + "/admin-token"
            let token = "reliability-\(UInt64.random(in: 0...UInt64.max))"
            let file = try #require(fopen(tokenFile, "w"))
            fputs(token + "\n", file)
            fclose(file)

            var generation = 0
            func serve() throws -> (ChildProcess, port: String) {
                generation += 1
                let child = try ChildProcess.spawn(executable, [
                    "serve", "--database-url", configuration.url, "--listen", "127.0.0.1:0",
                    "--admin-token-file", tokenFile, "--batch-window-ms", "2", "--batch-max-ids", "64",
                    "--poll-interval-ms", "100",
                ], outputPrefix: "\(work)/serve\(generation)")
                // "serving N listings from … on 127.0.0.1:PORT" once the cache is bootstrapped.
                for _ in 0..<1_200 {
                    if let line = child.standardOutput.split(separator: "\n").first(where: { $0.hasPrefix("serving") }),
                       let port = line.split(separator: ":").last
                    {
                        return (child, String(port))
                    }
                    if let ended = child.wait(timeoutMilliseconds: 0) {
                        throw ChildProcess.Failure(
                            description: "serve \(ended): \(child.standardError.suffix(2_000))")
                    }
                    ProjectorFixtures.sleepMilliseconds(50)
                }
                child.killAndReap()
                throw ChildProcess.Failure(description: "serve did not start: \(child.standardError.suffix(2_000))")
            }
            func advisoryLocksHeld() throws -> Int64 {
                try ProjectorFixtures.count(connection, """
                    SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    """)
            }

            let workload = ReliabilityWorkload(configuration: configuration, options: .init(writers: 32, seed: 2))
            try workload.start()
            var children: [ChildProcess] = []
            defer { for child in children { child.killAndReap() } }

            for kill in 0..<2 {
                let (child, _) = try serve()
                children.append(child)
                // Let it apply a few batches, then kill it at a random point of the stream.
                let base = try ProjectionStore.checkpoint(on: connection).appliedChanges
                #expect(try Self.waitForProgress(connection, beyond: base, entries: 50))
                ProjectorFixtures.sleepMilliseconds(Int.random(in: 20...200))
                child.send(SIGKILL)
                #expect(child.wait(timeoutMilliseconds: 10_000) == .signaled(SIGKILL), "kill \(kill)")
                // The killed session's backend ends when it sees the socket closed; only then is the feed free.
                let released = try eventually(attempts: 400, everyMilliseconds: 25) { try advisoryLocksHeld() == 0 }
                #expect(released)
            }
            let (last, port) = try serve()
            children.append(last)
            let base = try ProjectionStore.checkpoint(on: connection).appliedChanges
            #expect(try Self.waitForProgress(connection, beyond: base, entries: 50))
            let outcome = workload.stop()
            #expect(outcome.commits > 200)
            #expect(try Self.waitUntilDrained(connection))

            // The service compares its cache with the table (and the table with the definition).
            var verified = false
            for _ in 0..<40 {
                guard !verified else { break }
                let status = try ChildProcess.run(executable, [
                    "status", "--server", "127.0.0.1:\(port)", "--admin-token", token, "--verify",
                ], outputPrefix: "\(work)/status")
                verified = status.termination == .exited(0) && status.output.contains(": 0 mismatches")
                if !verified { ProjectorFixtures.sleepMilliseconds(100) }
            }
            #expect(verified)

            last.send(SIGTERM)
            #expect(last.wait(timeoutMilliseconds: 30_000) == .exited(0), "graceful stop: \(last.standardError.suffix(500))")
            let verify = try ChildProcess.run(
                executable, ["verify", "--database-url", configuration.url], outputPrefix: "\(work)/verify")
            #expect(verify.termination == .exited(0), "verify: \(verify.output) \(verify.errors)")
            #expect(verify.output.contains("no divergence"))
            try Self.expectConverged(connection, built: built, cache: nil)

            for name in ["serve1", "serve2", "serve3", "status", "verify"] {
                unlink("\(work)/\(name).stdout")
                unlink("\(work)/\(name).stderr")
            }
            unlink(tokenFile)
            rmdir(work)
        }
    }

    // MARK: (c) PostgreSQL restarts

    /// On a cluster of its own, PostgreSQL is restarted with `-m fast` and then `-m immediate` (crash recovery)
    /// while 32 writers run. The projector notices, reconnects, reloads the cache and goes on; nothing is lost.
    @Test func postgresRestartedWhileChangesFlow() throws {
        try ThrowawayPostgresCluster.with { cluster in
            let configuration = try cluster.createDatabase()
            let built = try Self.prepare(configuration)
            let driver = Self.driver(configuration)
            driver.start()
            defer { driver.stop() }
            let workload = ReliabilityWorkload(configuration: configuration, options: .init(writers: 32, seed: 3))
            try workload.start()

            func progressed(beyond batches: Int) -> Bool {
                for _ in 0..<1_200 {
                    let status = driver.status
                    if status.isConnected && status.batches > batches + 3 { return true }
                    ProjectorFixtures.sleepMilliseconds(25)
                }
                return false
            }
            #expect(progressed(beyond: 0))
            for (round, mode) in [ThrowawayPostgresCluster.ShutdownMode.fast, .immediate].enumerated() {
                let before = driver.status
                try cluster.restart(mode)
                // The projector must see the connection fail and recover; the writers reconnect too.
                let failed = eventually(attempts: 1_200, everyMilliseconds: 25) {
                    driver.status.failures > before.failures
                }
                #expect(failed, "restart \(round) (\(mode)) went unnoticed")
                #expect(progressed(beyond: driver.status.batches), "no progress after restart \(round) (\(mode))")
            }
            let outcome = workload.stop()
            #expect(outcome.commits > 100)

            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            #expect(try Self.waitUntilDrained(connection) { driver.status.appliedChanges == $0.appliedChanges })
            driver.stop()
            try Self.expectConverged(connection, built: built, cache: driver.index)
        }
    }

    // MARK: (d) rows violating the projection's expectations

    /// Base-table rows the projection does not expect (a listing whose location was deleted or never existed, a
    /// development without its prices, a listing without a type-specific row, outbox keys of rows that do not
    /// exist, text COPY must escape) are projected by the defining query's semantics: the table holds what the
    /// query returns (NULL city and area; NULL prices), the cache holds it too (empty city and area), nothing
    /// fails, and a fresh bootstrap reads it back.
    @Test func rowsViolatingExpectationsFollowTheDefiningQuery() throws {
        try ProjectorFixtures.withSeededDatabase(locations: 6, listings: 120) { configuration, connection in
            try ReliabilityWorkload.prepare(connection)
            try ProjectionStore.buildIfNeeded(on: connection)
            let built = try ProjectionStore.checkpoint(on: connection).appliedChanges
            let driver = Self.driver(configuration)
            driver.start()
            defer { driver.stop() }

            // An operator dropped the location key (say, during a schema change), then rows broke it.
            try connection.executeScript("""
                ALTER TABLE property.listings DROP CONSTRAINT listings_location_id_fkey;
                """)
            let listingsAtTwo = try connection.query(
                "SELECT id FROM property.listings WHERE location_id = 2 AND status = 'published' ORDER BY id")
                .map { try $0.decode(0, as: Int64.self) }
            #expect(!listingsAtTwo.isEmpty)
            let script = """
                BEGIN;
                DELETE FROM property.locations WHERE id = 2;
                UPDATE property.listings SET location_id = 987654 WHERE id = 5;
                DELETE FROM property.developments WHERE listing_id = 4;
                DELETE FROM property.existing_properties WHERE listing_id = 7;
                UPDATE property.listings SET title = E'tab\\there, line\\nbreak, back\\\\slash, \\\\N, Ação 🏠'
                    WHERE id = 9;
                INSERT INTO public.reliability_commits (writer, entries)
                    SELECT 0, count(*) FROM explore.change_outbox WHERE xid = pg_current_xact_id();
                COMMIT;
                BEGIN;
                INSERT INTO explore.change_outbox (source, key) VALUES
                    ('listings', 99999999), ('locations', 99999999), ('media', -1), ('developments', 0);
                INSERT INTO public.reliability_commits (writer, entries) VALUES (0, 4);
                COMMIT;
                """
            try connection.executeScript(script)
            #expect(try Self.waitUntilDrained(connection) { driver.status.appliedChanges == $0.appliedChanges })

            let projected = try connection.query("""
                SELECT id, city IS NULL AND area IS NULL, price_from IS NULL AND price_to IS NULL, title
                FROM explore.listings_projection WHERE id = ANY($1::bigint[]) ORDER BY id
                """, [ProjectionStore.int8Array(listingsAtTwo + [4, 5, 7, 9])])
            var byID: [Int64: (noPlace: Bool, noPrice: Bool, title: String)] = [:]
            for row in projected {
                byID[try row.decode(0, as: Int64.self)] = (
                    try row.decode(1, as: Bool.self), try row.decode(2, as: Bool.self), try row.decode(3, as: String.self))
            }
            for id in listingsAtTwo { #expect(byID[id]?.noPlace == true, "listing \(id) at the deleted location") }
            #expect(byID[5]?.noPlace == true)
            #expect(byID[4]?.noPrice == true && byID[7]?.noPrice == true)
            #expect(byID[9]?.title == "tab\there, line\nbreak, back\\slash, \\N, Ação 🏠")
            let cached = driver.index.rows(ids: listingsAtTwo + [5, 9])
            #expect(cached.count == listingsAtTwo.count + 2)
            #expect(cached.filter { $0.id != 9 }.allSatisfy { $0.city.isEmpty && $0.area.isEmpty })
            #expect(cached.first { $0.id == 9 }?.title == byID[9]?.title)

            // The location comes back: its listings get their place again.
            try connection.executeScript("""
                BEGIN;
                INSERT INTO property.locations (id, city, area) VALUES (2, 'Restored City', 'Restored Area');
                INSERT INTO public.reliability_commits (writer, entries)
                    SELECT 0, count(*) FROM explore.change_outbox WHERE xid = pg_current_xact_id();
                COMMIT;
                """)
            #expect(try Self.waitUntilDrained(connection) { driver.status.appliedChanges == $0.appliedChanges })
            #expect(driver.index.rows(ids: listingsAtTwo).allSatisfy { $0.city == "Restored City" })
            #expect(driver.status.failures == 0, "a bad row made the projector fail: \(driver.status.lastError ?? "")")
            driver.stop()

            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: driver.index)
            #expect(table.isClean && table.pending.isEmpty)
            #expect(cache?.isClean == true)
            let (fresh, checkpoint) = try ProjectionStore.loadCache(on: connection)
            #expect(ProjectionVerifier.compare(
                cache: ExploreIndex(store: fresh), with: try ProjectionStore.copyProjectionRows(on: connection)).isClean)
            #expect(fresh.count == driver.index.count)
            #expect(checkpoint.appliedChanges == built + (try ReliabilityWorkload.committedEntries(connection)))
        }
    }
}
