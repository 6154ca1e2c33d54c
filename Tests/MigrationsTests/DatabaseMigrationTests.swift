import DemoData
import ExploreQuery
import Foundation
@testable import Migrations
import Postgres
import Testing
import TestSupport

/// Migrations, doctor and seeding against a real PostgreSQL (scripts/test starts one); each test in its own
/// database.
@Suite("Migrations against PostgreSQL", .timeLimit(.minutes(5)))
struct DatabaseMigrationTests {
    let files: [MigrationFile]

    init() throws {
        files = try MigrationFile.load(directory: MigrationFixtures.sqlDirectory)
    }

    private func withMigratedDatabase(_ body: (PostgresConnection) throws -> Void) throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try MigrationRunner(connection: connection, files: files).up()
            try body(connection)
        }
    }

    private func expectSame(_ before: SchemaSnapshot, _ after: SchemaSnapshot, _ context: String) {
        let added = after.facts.subtracting(before.facts).sorted()
        let removed = before.facts.subtracting(after.facts).sorted()
        #expect(added.isEmpty && removed.isEmpty, "\(context): added \(added), removed \(removed)")
    }

    private func historyVersions(_ connection: PostgresConnection) throws -> [Int] {
        try connection.query("SELECT version FROM public.migration_history ORDER BY version")
            .map { try $0.decode(0, as: Int.self) }
    }

    @Test("every up, then its down, leaves the catalog exactly as it was, step by step")
    func upThenDownRestoresCatalog() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let runner = MigrationRunner(connection: connection, files: files)
            // The history table is the runner's, not a migration's: create it before the first snapshot.
            try runner.up(to: 1)
            try runner.down(steps: 1)
            var snapshots = [try SchemaSnapshot.read(connection)]
            for file in files {
                let steps = try runner.up(to: file.version)
                #expect(steps.map(\.migration) == [file.identifier])
                let snapshot = try SchemaSnapshot.read(connection)
                #expect(snapshot != snapshots.last, "\(file.identifier) changed nothing in the catalog")
                snapshots.append(snapshot)
            }
            for file in files.reversed() {
                let steps = try runner.down(steps: 1)
                #expect(steps.map(\.migration) == [file.identifier])
                snapshots.removeLast()
                expectSame(try #require(snapshots.last), try SchemaSnapshot.read(connection),
                           "after reverting \(file.identifier)")
            }
            #expect(try historyVersions(connection).isEmpty)
        }
    }

    @Test("up is idempotent: a second run applies nothing and changes nothing")
    func upIsIdempotent() throws {
        try withMigratedDatabase { connection in
            let before = try SchemaSnapshot.read(connection)
            let history = try MigrationRunner(connection: connection, files: files).appliedMigrations()
            let steps = try MigrationRunner(connection: connection, files: files).up()
            #expect(steps.isEmpty)
            expectSame(before, try SchemaSnapshot.read(connection), "second up")
            #expect(try MigrationRunner(connection: connection, files: files).appliedMigrations() == history)
            #expect(history.map(\.version) == files.map(\.version))
            #expect(history.map(\.checksum) == files.map(\.checksum))
        }
    }

    @Test("a changed or missing migration file is refused by up, down and shown by status")
    func driftRefused() throws {
        try withMigratedDatabase { connection in
            var changed = files
            changed[2].upSQL += "\n-- edited after it was applied\n"
            for attempt in [{ try MigrationRunner(connection: connection, files: changed).up() },
                            { try MigrationRunner(connection: connection, files: changed).down() }] {
                do {
                    _ = try attempt()
                    Issue.record("drift was not refused")
                } catch let error as MigrationError {
                    #expect(error.code == .checksumDrift)
                    #expect(error.message.contains(files[2].identifier))
                }
            }
            let states = try MigrationRunner(connection: connection, files: changed).status()
            #expect(states.filter { if case .drifted = $0.state { true } else { false } }.map(\.version) == [3])

            let missing = Array(files.dropLast())
            do {
                try MigrationRunner(connection: connection, files: missing).up()
                Issue.record("missing file was not refused")
            } catch let error as MigrationError {
                #expect(error.code == .missingFile)
            }
            #expect(try historyVersions(connection) == files.map(\.version))
        }
    }

    @Test("two concurrent runners serialize on the advisory lock: each migration applies exactly once")
    func concurrentRunnersSerialize() throws {
        try TestPostgres.withDatabase { configuration in
            // A slow first migration widens the window in which an unlocked second runner would interleave.
            var slowFiles = files
            slowFiles[0].upSQL = "SELECT pg_sleep(0.5);\n" + slowFiles[0].upSQL
            let runnerFiles = slowFiles
            let results = ConcurrentResults()
            let group = DispatchGroup()
            for _ in 0..<2 {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    do {
                        let connection = try PostgresConnection.connect(configuration)
                        defer { connection.close() }
                        let steps = try MigrationRunner(connection: connection, files: runnerFiles,
                                                        lockWait: .seconds(60)).up()
                        results.append(.success(steps.count))
                    } catch {
                        results.append(.failure("\(error)"))
                    }
                }
            }
            group.wait()
            let outcomes = results.values
            #expect(outcomes.count == 2)
            let counts = outcomes.compactMap { if case .success(let count) = $0 { count } else { nil } }
            #expect(counts.sorted() == [0, files.count], "\(outcomes)")
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            #expect(try historyVersions(connection) == files.map(\.version))
        }
    }

    @Test("a runner gives up after the lock wait with a message naming the holder")
    func lockTimeout() throws {
        try TestPostgres.withDatabase { configuration in
            let holder = try PostgresConnection.connect(configuration)
            defer { holder.close() }
            try holder.query("SELECT pg_advisory_lock($1)", [MigrationRunner.advisoryLockKey])
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            do {
                try MigrationRunner(connection: connection, files: files, lockWait: .milliseconds(300)).up()
                Issue.record("the lock was not respected")
            } catch let error as MigrationError {
                #expect(error.code == .lockTimeout)
                #expect(error.message.contains("backend pid \(holder.backendProcessID)"))
            }
            #expect(try connection.query("SELECT to_regclass('property.listings') IS NULL")
                .first?.decode(0, as: Bool.self) == true)
        }
    }

    @Test("a migration failing halfway is rolled back: catalog and history unchanged")
    func failingMigrationLeavesDatabaseUnchanged() throws {
        try withMigratedDatabase { connection in
            let before = try SchemaSnapshot.read(connection)
            let broken = MigrationFile(
                version: files.count + 1, name: "broken",
                upSQL: "CREATE TABLE property.half (id integer);\nALTER TABLE property.listings ADD COLUMN x int;\n"
                    + "SELECT 1 / 0;\n",
                downSQL: "DROP TABLE property.half;\n")
            do {
                try MigrationRunner(connection: connection, files: files + [broken]).up()
                Issue.record("the broken migration succeeded")
            } catch let error as MigrationError {
                #expect(error.code == .migrationFailed)
                #expect(error.message.contains("22012"))
                #expect(error.message.contains("rolled back"))
            }
            expectSame(before, try SchemaSnapshot.read(connection), "after the failed migration")
            #expect(try historyVersions(connection) == files.map(\.version))
        }
    }

    @Test("a half-applied migration (objects exist, history row missing) fails clearly and changes nothing")
    func halfAppliedMigration() throws {
        try withMigratedDatabase { connection in
            try connection.query("DELETE FROM public.migration_history WHERE version >= 8")
            let before = try SchemaSnapshot.read(connection)
            do {
                try MigrationRunner(connection: connection, files: files).up()
                Issue.record("re-applying over existing objects succeeded")
            } catch let error as MigrationError {
                #expect(error.code == .migrationFailed)
                #expect(error.message.contains("0008_explore_read_model"))
                #expect(error.message.contains("doctor"))
            }
            expectSame(before, try SchemaSnapshot.read(connection), "after the half-applied attempt")
        }
    }

    @Test("draft promotion: a valid draft creates exactly its rows and shows in the read model")
    func draftPromotionSucceeds() throws {
        try withMigratedDatabase { connection in
            try seedReferenceRows(connection)
            let draft: Int64 = try #require(try connection.query("""
                INSERT INTO wizard.listing_drafts (owner_user_id, listing_type, step, status, payload)
                VALUES (1, 'development', 5, 'ready', $1::jsonb) RETURNING id
                """, [#"{"type":"development","title":"Aurora Riverside","location_id":1,"price_from":250000,"#
                      + #""price_to":410000,"units_total":40,"images":["https://i.example.com/1.jpg","#
                      + #""https://i.example.com/2.jpg"]}"#]).first?.decode(0, as: Int64.self))
            let listingID = try connection.query("SELECT wizard.promote_draft($1)", [draft])
                .first?.decode(0, as: Int64.self)
            #expect(try count(connection, "property.listings") == 1)
            #expect(try count(connection, "property.developments") == 1)
            #expect(try count(connection, "property.existing_properties") == 0)
            #expect(try count(connection, "property.media") == 2)
            let row = try #require(try connection.query("""
                SELECT id, listing_type, price_from, price_to, bedrooms, primary_image_url, city
                FROM explore.explore_listings
                """).first)
            #expect(try row.decode(0, as: Int64.self) == listingID)
            #expect(row[1] == "development")
            #expect(row[2] == "250000" && row[3] == "410000" && row[4] == nil)
            #expect(row[5] == "https://i.example.com/1.jpg")
            #expect(row[6] == "Lisbon")
            #expect(try connection.query("SELECT status, promoted_listing_id FROM wizard.listing_drafts")
                .first.map { [$0[0], $0[1]] } == ["promoted", listingID.map(String.init)])
            // Promoting twice is refused.
            #expect(throws: PostgresError.self) { try connection.query("SELECT wizard.promote_draft($1)", [draft]) }
            #expect(try count(connection, "property.listings") == 1)
        }
    }

    @Test("draft promotion is atomic: every invalid payload fails with EXD03 and leaves no partial rows")
    func draftPromotionAtomic() throws {
        try withMigratedDatabase { connection in
            try seedReferenceRows(connection)
            let invalid = [
                #"{"type":"existing","title":"A","location_id":1,"price":100,"bedrooms":2}"#,
                #"{"type":"existing","title":"","location_id":1,"price":100,"bedrooms":2,"bathrooms":1}"#,
                #"{"type":"existing","title":"A","location_id":99,"price":100,"bedrooms":2,"bathrooms":1}"#,
                #"{"type":"existing","title":"A","location_id":1,"price":-5,"bedrooms":2,"bathrooms":1}"#,
                #"{"type":"existing","title":"A","location_id":1,"price":1.5,"bedrooms":2,"bathrooms":1}"#,
                #"{"type":"development","title":"A","location_id":1,"price":100,"bedrooms":2,"bathrooms":1}"#,
                // Valid fields, but the second image is not a URL: fails after the listing row was inserted.
                #"{"type":"existing","title":"A","location_id":1,"price":100,"bedrooms":2,"bathrooms":1,"#
                    + #""images":["https://i.example.com/1.jpg",42]}"#,
            ]
            for payload in invalid {
                let draft = try connection.query("""
                    INSERT INTO wizard.listing_drafts (owner_user_id, listing_type, payload)
                    VALUES (1, 'existing', $1::jsonb) RETURNING id
                    """, [payload]).first?.decode(0, as: Int64.self)
                do {
                    try connection.query("SELECT wizard.promote_draft($1)", [draft])
                    Issue.record("promoted an invalid payload: \(payload)")
                } catch let error as PostgresError {
                    #expect(error.sqlState == "EXD03", "\(payload): \(error)")
                }
                for table in ["property.listings", "property.existing_properties", "property.developments",
                              "property.media"] {
                    #expect(try count(connection, table) == 0, "\(table) after \(payload)")
                }
                #expect(try connection.query("SELECT status FROM wizard.listing_drafts WHERE id = $1", [draft])
                    .first?[0] == "in_progress")
            }
            do {
                try connection.query("SELECT wizard.promote_draft(12345)")
                Issue.record("promoted a missing draft")
            } catch let error as PostgresError {
                #expect(error.sqlState == "EXD01")
            }
        }
    }

    @Test("explore_reader reads the read model and nothing else; explore_projector reads base tables")
    func roles() throws {
        try withMigratedDatabase { connection in
            try seedReferenceRows(connection)
            try seedPublishedListing(connection)
            try connection.executeScript("SET ROLE explore_reader")
            #expect(try connection.query("SELECT count(*) FROM explore.explore_listings").count == 1)
            for table in ["property.listings", "property.locations", "core.users", "wizard.listing_drafts",
                          "public.migration_history"] {
                do {
                    try connection.query("SELECT 1 FROM \(table) LIMIT 1")
                    Issue.record("explore_reader can read \(table)")
                } catch let error as PostgresError {
                    #expect(error.sqlState == "42501", "\(table): \(error)")
                }
            }
            try connection.executeScript("RESET ROLE; SET ROLE explore_projector")
            #expect(try connection.query("SELECT count(*) FROM property.listings").count == 1)
            try connection.executeScript("CREATE TABLE explore.scratch (id bigint); DROP TABLE explore.scratch")
            do {
                try connection.query("DELETE FROM property.listings")
                Issue.record("explore_projector can write base tables")
            } catch let error as PostgresError {
                #expect(error.sqlState == "42501")
            }
            try connection.executeScript("RESET ROLE")
        }
    }

    @Test("doctor reports an added and a dropped column, and a clean database as clean")
    func doctorReportsDrift() throws {
        try withMigratedDatabase { connection in
            let clean = try SchemaDoctor.examine(live: connection, files: files)
            #expect(clean.isClean, "\(clean.drift)")
            #expect(clean.comparedVersion == files.count)
            try connection.executeScript("""
                ALTER TABLE property.listings ADD COLUMN foo integer;
                ALTER TABLE property.media DROP COLUMN position;
                ALTER TABLE core.users ALTER COLUMN display_name DROP NOT NULL;
                """)
            let report = try SchemaDoctor.examine(live: connection, files: files)
            #expect(report.drift.contains(
                "table property.listings: column foo exists in the database but no migration creates it"))
            #expect(report.drift.contains(
                "table property.media: column position is missing from the database (a migration creates it)"))
            #expect(report.drift.contains(
                "table core.users: column display_name is nullable in the database, the migrations make it NOT NULL"))
            #expect(!report.isClean)
        }
    }

    @Test("seed-demo loads the data set and the read model equals DemoDataset.exploreRows() exactly")
    func seedDemoDifferential() throws {
        try withMigratedDatabase { connection in
            let dataset = DemoDataset(listings: 2_000, seed: 7)
            let before = try SchemaSnapshot.read(connection)
            let summary = try DemoSeeder.seed(dataset, into: connection)
            #expect(summary.listings == 2_000)
            #expect(try count(connection, "property.listings") == 2_000)
            #expect(try count(connection, "property.media") == summary.media)
            #expect(try count(connection, "wizard.listing_drafts") == dataset.draftCount)
            // Keys and indexes were suspended for the load; the schema must be exactly as before.
            expectSame(before, try SchemaSnapshot.read(connection), "after seeding")

            let rows = try connection.query("""
                SELECT id, listing_type, status, title, location_id, price_from, price_to, bedrooms, bathrooms,
                       primary_image_url, city, area, (extract(epoch FROM created_at) * 1000000)::bigint
                FROM explore.explore_listings ORDER BY id
                """)
            var actual: [ExploreListing] = []
            for row in rows {
                actual.append(ExploreListing(
                    id: try row.decode(0), listingType: try #require(ListingType(name: try row.decode(1))),
                    status: try row.decode(2), title: try row.decode(3), locationID: try row.decode(4),
                    priceFrom: try row.decode(5), priceTo: try row.decode(6),
                    bedrooms: try row.decode(7, as: Int?.self).map { Int32($0) },
                    bathrooms: try row.decode(8, as: Int?.self).map { Int32($0) },
                    primaryImageURL: try row.decode(9), city: try row.decode(10), area: try row.decode(11),
                    createdAt: try row.decode(12)))
            }
            let expected = dataset.exploreRows()
            #expect(actual.count == expected.count)
            let mismatches = zip(actual, expected).filter { $0.0 != $0.1 }
            #expect(mismatches.isEmpty, "first mismatch: \(String(describing: mismatches.first))")

            // New rows get ids past the seeded ones.
            let nextID = try connection.query("""
                INSERT INTO property.listings (type, status, title, location_id, owner_user_id)
                VALUES ('existing', 'draft', 'after seeding', 1, 1) RETURNING id
                """).first?.decode(0, as: Int64.self)
            #expect(nextID == 2_001)

            do {
                try DemoSeeder.seed(DemoDataset(listings: 10), into: connection)
                Issue.record("seeding over existing data was not refused")
            } catch let error as MigrationError {
                #expect(error.code == .seedFailed)
                #expect(error.message.contains("--replace"))
            }
            let replaced = try DemoSeeder.seed(DemoDataset(listings: 10), into: connection, replace: true)
            #expect(replaced.listings == 10)
            #expect(try count(connection, "property.listings") == 10)
        }
    }

    @Test("seeding an unmigrated database fails with a message saying to migrate first")
    func seedNeedsMigrations() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            do {
                try DemoSeeder.seed(DemoDataset(listings: 10), into: connection)
                Issue.record("seeded an empty database")
            } catch let error as MigrationError {
                #expect(error.message.contains("migrate up"))
            }
        }
    }

    private func seedReferenceRows(_ connection: PostgresConnection) throws {
        try connection.executeScript("""
            INSERT INTO core.users (email, display_name) VALUES ('owner@example.com', 'Owner');
            INSERT INTO property.locations (city, area) VALUES ('Lisbon', 'Centro');
            """)
    }

    private func seedPublishedListing(_ connection: PostgresConnection) throws {
        try connection.executeScript("""
            INSERT INTO property.listings (id, type, status, title, location_id, owner_user_id)
            OVERRIDING SYSTEM VALUE VALUES (1000, 'existing', 'published', 'Seeded', 1, 1);
            INSERT INTO property.existing_properties (listing_id, price, bedrooms, bathrooms) VALUES (1000, 1, 1, 1);
            """)
    }

    private func count(_ connection: PostgresConnection, _ table: String) throws -> Int {
        try connection.query("SELECT count(*) FROM \(table)").first?.decode(0, as: Int.self) ?? -1
    }
}

/// Outcomes collected from the runner threads.
final class ConcurrentResults: @unchecked Sendable {
    enum Outcome: Sendable { case success(Int), failure(String) }
    // Guarded by `lock`; appended from two threads.
    private let lock = NSLock()
    private var storage: [Outcome] = []

    func append(_ outcome: Outcome) { lock.withLock { storage.append(outcome) } }
    var values: [Outcome] { lock.withLock { storage } }
}
