import ExploreQuery
import Foundation
import Postgres
import Projector
import TestSupport
import Testing

/// Outbox capture switched off for a Kafka-only deployment, on a real PostgreSQL: writers stop filling the
/// outbox, the outbox feed refuses to follow rather than miss changes, and capture on plus a rebuild bring the
/// outbox feed back with nothing lost.
@Suite("Outbox capture", .serialized, .timeLimit(.minutes(5)))
struct OutboxCaptureTests {
    /// A database the migrations never reached (or were reverted from) is named as such, not as capture off.
    @Test func anUnmigratedDatabaseIsReportedAsNotMigrated() throws {
        try TestPostgres.withDatabase { configuration in
            let driver = RebuildTests.driver(configuration)
            driver.start()
            defer { driver.stop() }
            var lastError = ""
            eventually(attempts: 500, everyMilliseconds: 10) {
                lastError = driver.status.lastError ?? ""
                return !lastError.isEmpty
            }
            #expect(lastError.contains("notMigrated") && lastError.contains("migrate up"), "\(lastError)")
            #expect(!driver.status.isBootstrapped)
        }
    }

    /// The capture trigger on every base table and statement kind: one entry per distinct changed key, the old
    /// and the new key when an update moves a row, entries for the rows a cascade deletes, none for a statement
    /// that changes nothing; a key column the trigger function does not know is refused, not guessed.
    @Test func everyTableAndStatementKindIsCapturedByItsKeys() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            func captured(_ sql: String) throws -> [String] {
                try connection.query("DELETE FROM explore.change_outbox")
                try connection.query(sql)
                return try connection.query("""
                    SELECT source || ':' || key FROM explore.change_outbox ORDER BY source, key
                    """).map { $0[0] ?? "" }
            }
            #expect(try captured("INSERT INTO property.locations (id, city, area) VALUES (900, 'Probe', 'One')")
                        == ["locations:900"])
            #expect(try captured("UPDATE property.locations SET area = 'Two' WHERE id = 900") == ["locations:900"])
            #expect(try captured("""
                INSERT INTO property.listings (id, type, status, title, location_id, owner_user_id)
                VALUES (901, 'existing', 'published', 'Probe', 900, 1), (902, 'development', 'published', 'Probe', 900, 1)
                """) == ["listings:901", "listings:902"])
            #expect(try captured("""
                INSERT INTO property.existing_properties (listing_id, price, bedrooms, bathrooms) VALUES (901, 100, 1, 1)
                """) == ["existing_properties:901"])
            #expect(try captured("""
                INSERT INTO property.developments (listing_id, price_from, price_to) VALUES (902, 100, 200)
                """) == ["developments:902"])
            #expect(try captured("""
                INSERT INTO property.media (listing_id, url, position)
                VALUES (901, 'https://x.example/1', 0), (901, 'https://x.example/2', 1)
                """) == ["media:901"])
            #expect(try captured("UPDATE property.media SET listing_id = 902 WHERE listing_id = 901 AND position = 1")
                        == ["media:901", "media:902"])
            #expect(try captured("UPDATE property.existing_properties SET price = 110 WHERE listing_id = 901")
                        == ["existing_properties:901"])
            #expect(try captured("UPDATE property.developments SET price_to = 300 WHERE listing_id = 902")
                        == ["developments:902"])
            #expect(try captured("UPDATE property.listings SET title = 'Probe 2' WHERE id IN (901, 902)")
                        == ["listings:901", "listings:902"])
            #expect(try captured("UPDATE property.listings SET title = 'Nobody' WHERE id = -1") == [])
            #expect(try captured("DELETE FROM property.listings WHERE id = 901")
                        == ["existing_properties:901", "listings:901", "media:901"])
            #expect(try captured("DELETE FROM property.listings WHERE id = 902")
                        == ["developments:902", "listings:902", "media:902"])
            #expect(try captured("DELETE FROM property.locations WHERE id = 900") == ["locations:900"])

            try connection.executeScript("""
                CREATE TABLE property.capture_probe (ref bigint);
                CREATE TRIGGER capture_probe_insert AFTER INSERT ON property.capture_probe
                    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION explore.capture_change('ref');
                """)
            let refused = #expect(throws: PostgresError.self) {
                try connection.query("INSERT INTO property.capture_probe VALUES (1)")
            }
            #expect(refused?.message.contains("unknown key column ref on property.capture_probe") == true,
                    "\(String(describing: refused))")
        }
    }

    @Test func captureOffStopsTheOutboxAndTheOutboxFeedRefusesUntilOnAndRebuilt() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            let first = RebuildTests.driver(configuration)
            first.start()
            RebuildTests.waitUntilBootstrapped(first)
            try RebuildTests.waitUntilCaughtUp(connection, first)
            first.stop()

            let triggers = try OutboxCapture.triggers(on: connection)
            #expect(Set(triggers.map(\.table)) == [
                "property.listings", "property.developments", "property.existing_properties", "property.media",
                "property.locations",
            ])
            #expect(triggers.allSatisfy { $0.isEnabled })
            let switchedOff = try OutboxCapture.set(enabled: false, on: connection)
            #expect(switchedOff.count == triggers.count)
            let afterOff = try OutboxCapture.triggers(on: connection)
            #expect(afterOff.allSatisfy { !$0.isEnabled })
            let switchedAgain = try OutboxCapture.set(enabled: false, on: connection)
            #expect(switchedAgain.isEmpty, "switching off twice changes nothing")

            // Every kind of base row changes; none of it reaches the outbox.
            let outboxBefore = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
            try connection.query("UPDATE property.listings SET title = 'while capture was off' WHERE id = 3")
            try connection.query("UPDATE property.existing_properties SET price = price + 1")
            try connection.query("UPDATE property.developments SET price_to = price_to + 1")
            try connection.query("DELETE FROM property.media WHERE listing_id = 5")
            try connection.query("UPDATE property.locations SET city = city || ' (renamed)' WHERE id = 1")
            #expect(try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
                == outboxBefore)

            // The outbox feed would miss those changes: it refuses, says why, and serves nothing stale as fresh.
            let refused = RebuildTests.driver(configuration)
            refused.start()
            var lastError = ""
            eventually(attempts: 500, everyMilliseconds: 10) {
                lastError = refused.status.lastError ?? ""
                return lastError.contains("captureDisabled")
            }
            #expect(lastError.contains("captureDisabled"), "\(lastError)")
            #expect(lastError.contains("property.listings"))
            #expect(!refused.status.isBootstrapped)
            refused.stop()

            // Capture on and a rebuild: the projection catches up with what changed while capture was off.
            let switchedOn = try OutboxCapture.set(enabled: true, on: connection)
            #expect(switchedOn.count == triggers.count)
            let index = ExploreIndex()
            let resumed = RebuildTests.driver(configuration, index: index)
            resumed.start()
            defer { resumed.stop() }
            RebuildTests.waitUntilBootstrapped(resumed)
            #expect(!(try ProjectorFixtures.divergence(connection).table.isClean), "the missed changes show")
            _ = try resumed.rebuild()
            try RebuildTests.waitUntilCaughtUp(connection, resumed)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean, "\(table)")
            #expect(cache?.isClean == true)
            #expect(index.rows(ids: [3]).first?.title == "while capture was off")
            // Capture works again for the outbox feed.
            try connection.query("UPDATE property.listings SET title = 'after capture on' WHERE id = 3")
            try RebuildTests.waitUntilCaughtUp(connection, resumed)
            #expect(index.rows(ids: [3]).first?.title == "after capture on")
        }
    }

    /// `outbox-capture status|off|on`: readable lines, exit 1 when capture is partly off.
    @Test func commandSwitchesAndReports() throws {
        try #require(BuiltExecutable.path("explore-projector") != nil, "build explore-projector first (swift build)")
        try TestPostgres.withDatabase { configuration in
            try ProjectorFixtures.migrate(configuration)
            func run(_ arguments: [String]) throws -> BuiltExecutable.Outcome {
                try BuiltExecutable.run(["outbox-capture"] + arguments + ["--database-url", configuration.url])
            }
            var outcome = try run(["status"])
            #expect(outcome.status == 0)
            #expect(outcome.stdout.contains("on  property.listings listings_capture_update"))
            #expect(outcome.stdout.hasSuffix("outbox capture is on\n"))

            outcome = try run(["off"])
            #expect(outcome.status == 0)
            #expect(outcome.stdout.contains("outbox capture is off (15 trigger(s) switched)"), "\(outcome.stdout)")

            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.query("ALTER TABLE property.media ENABLE TRIGGER media_capture_insert")
            outcome = try run(["status"])
            #expect(outcome.status == 1)
            #expect(outcome.stdout.contains("on  property.media media_capture_insert"))
            #expect(outcome.stderr.contains("partly off (1 of 15 triggers on)"), "\(outcome.stderr)")

            outcome = try run(["on"])
            #expect(outcome.status == 0)
            #expect(outcome.stdout.contains("outbox capture is on (14 trigger(s) switched)"), "\(outcome.stdout)")
            let afterOn = try OutboxCapture.triggers(on: connection)
            #expect(afterOn.allSatisfy { $0.isEnabled })
        }
    }
}
