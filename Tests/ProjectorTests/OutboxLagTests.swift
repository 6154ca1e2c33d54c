import ExploreQuery
import Migrations
import Postgres
@testable import Projector
import Testing
import TestSupport

/// The lag the projector reports: outbox entries not applied yet and the age of the oldest, measured on a real
/// PostgreSQL; and the driver filling both into its status.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct OutboxLagTests {
    @Test("pending entries are counted and the oldest one's age is the lag; an applied outbox means no lag")
    func measuresPendingAndAge() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            #expect(try ProjectionStore.buildIfNeeded(on: connection))

            var tracker = OutboxLagTracker(interval: .seconds(1))
            #expect(tracker.isDue(now: 0))
            let empty = try tracker.measure(on: connection, now: 0)
            #expect(empty == OutboxLagTracker.Sample(pendingChanges: 0, lagMilliseconds: 0))
            #expect(!tracker.isDue(now: 999_999_999))

            // Two changes, the older one written two seconds ago.
            try connection.query("UPDATE property.listings SET title = 'Renamed' WHERE id IN (1, 3)")
            try connection.query("""
                UPDATE explore.change_outbox SET created_at = clock_timestamp() - interval '2 seconds'
                WHERE id = (SELECT min(id) FROM explore.change_outbox)
                """)
            let pending = try tracker.measure(on: connection, now: 2_000_000_000)
            #expect(pending.pendingChanges == 2)
            let lag = try #require(pending.lagMilliseconds)
            #expect(lag >= 2_000 && lag < 60_000)

            // Applied: the entries are gone, so is the lag.
            let (_, checkpoint) = try ProjectionStore.loadCache(on: connection)
            var feed = OutboxFeedStateMachine(checkpoint: checkpoint.position, pageSize: 100)
            #expect(try ProjectorFixtures.drain(connection, feed: &feed) == 2)
            #expect(try tracker.measure(on: connection, now: 3_000_000_000)
                == OutboxLagTracker.Sample(pendingChanges: 0, lagMilliseconds: 0))
        }
    }

    @Test("a slow measurement pushes the next one back by 20 times its cost, never below the interval")
    func backsOffAfterSlowMeasurements() {
        var tracker = OutboxLagTracker(interval: .milliseconds(250))
        tracker.scheduleNext(now: 1_000_000_000, cost: 1_000_000)  // 1 ms: the interval rules
        #expect(!tracker.isDue(now: 1_249_999_999))
        #expect(tracker.isDue(now: 1_250_000_000))
        tracker.scheduleNext(now: 2_000_000_000, cost: 100_000_000)  // 100 ms: 2 s pause
        #expect(!tracker.isDue(now: 3_999_999_999))
        #expect(tracker.isDue(now: 4_000_000_000))
    }

    @Test("a database migrated before created_at existed reports pending changes without a lag")
    func withoutCreatedAt() throws {
        try TestPostgres.withDatabase { configuration in
            try ProjectorFixtures.migrate(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("ALTER TABLE explore.change_outbox DROP COLUMN created_at")
            try ProjectorFixtures.seed(connection)
            var tracker = OutboxLagTracker(interval: .zero)
            let sample = try tracker.measure(on: connection, now: 0)
            #expect(sample.pendingChanges > 0)
            #expect(sample.lagMilliseconds == nil)
        }
    }

    @Test("the outbox driver reports pending changes and lag in its status")
    func driverReportsLag() throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            var driverConfiguration = ProjectorDriver.Configuration(postgres: configuration,
                                                                    pollInterval: .milliseconds(20))
            driverConfiguration.lagSampleInterval = .milliseconds(10)
            let driver = ProjectorDriver(configuration: driverConfiguration, index: ExploreIndex())
            driver.start()
            defer { driver.stop() }
            var status = driver.status
            eventually(attempts: 1_000, everyMilliseconds: 10) {
                status = driver.status
                return status.isBootstrapped && status.lagMilliseconds != nil
            }
            #expect(status.pendingChanges == 0)
            #expect(status.lagMilliseconds == 0)
            try connection.query("UPDATE property.listings SET title = 'Again' WHERE id = 5")
            eventually(attempts: 1_000, everyMilliseconds: 10) { driver.status.appliedChanges != status.appliedChanges }
            #expect(driver.status.appliedChanges == status.appliedChanges + 1)
            eventually(attempts: 1_000, everyMilliseconds: 10) { driver.status.pendingChanges == 0 }
            #expect(driver.status.pendingChanges == 0)
        }
    }
}
