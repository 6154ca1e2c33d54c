import ExploreQuery
import Migrations
import Postgres
@testable import Projector
import TestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shared set-up for the integration tests: a migrated database with a small portal in it.
enum ProjectorFixtures {
    /// The repository root, found from this file's path.
    static let repositoryRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    /// Migrates a fresh database up to the newest migration.
    static func migrate(_ configuration: PostgresConfiguration) throws {
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        let files = try MigrationFile.load(directory: repositoryRoot + "/sql")
        _ = try MigrationRunner(connection: connection, files: files, log: { _ in }).up()
    }

    /// Runs `body` on a throwaway database, migrated and seeded (see ``seed(_:locations:listings:)``), with a
    /// connection to it.
    static func withSeededDatabase<T>(
        locations: Int = 6, listings: Int = 120, _ body: (PostgresConfiguration, PostgresConnection) throws -> T
    ) throws -> T {
        try TestPostgres.withDatabase { configuration in
            try migrate(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try seed(connection, locations: locations, listings: listings)
            return try body(configuration, connection)
        }
    }

    /// Inserts `locations` locations, one user and `listings` listings of both types, half with a primary image,
    /// a few drafts (not in the read model).
    static func seed(_ connection: PostgresConnection, locations: Int = 6, listings: Int = 120) throws {
        try connection.executeScript("""
            INSERT INTO core.users (email, display_name) VALUES ('owner@example.com', 'Owner');
            INSERT INTO property.locations (city, area)
                SELECT 'City ' || (i % 3), 'Area ' || i FROM generate_series(1, \(locations)) i;
            INSERT INTO property.listings (type, status, title, location_id, owner_user_id)
                SELECT CASE WHEN i % 2 = 0 THEN 'development' ELSE 'existing' END,
                       CASE WHEN i % 10 = 0 THEN 'draft' ELSE 'published' END,
                       'Listing ' || i, 1 + i % \(locations), 1
                FROM generate_series(1, \(listings)) i;
            INSERT INTO property.developments (listing_id, price_from, price_to)
                SELECT id, 100000 + id, 200000 + id FROM property.listings WHERE type = 'development';
            INSERT INTO property.existing_properties (listing_id, price, bedrooms, bathrooms)
                SELECT id, 50000 + id, id % 5, 1 + id % 3 FROM property.listings WHERE type = 'existing';
            INSERT INTO property.media (listing_id, url, is_primary, position)
                SELECT id, 'https://img.example.com/' || id || '.jpg', true, 0 FROM property.listings WHERE id % 2 = 1;
            """)
    }

    /// Runs the feed to the end without the driver: fetch, batch, apply, until the outbox window is empty.
    /// Returns the number of entries applied; `afterBatch` sees each committed batch.
    @discardableResult
    static func drain(
        _ connection: PostgresConnection, feed: inout OutboxFeedStateMachine, index: ExploreIndex? = nil,
        maximumKeys: Int = 50, beforeCommit: () throws -> Void = {}, afterBatch: (ChangeSet) throws -> Void = { _ in }
    ) throws -> Int {
        var batcher = ChangeBatcher(configuration: .init(window: .zero, maximumKeys: maximumKeys))
        var applied = 0
        var rounds = 0
        while rounds < 10_000 {
            rounds += 1
            guard case .deliver(let entries, let more) = feed.fetched(
                try ProjectionStore.fetch(feed.nextFetch(limit: batcher.room), on: connection))
            else { break }
            _ = batcher.add(entries, now: 0)
            if more && batcher.tick(now: 0) != .flushNow { continue }
            let batch = batcher.takeBatch()
            do {
                let result = try ProjectionStore.apply(
                    batch, from: feed.committed, to: feed.read, on: connection, beforeCommit: beforeCommit)
                feed.batchCommitted()
                index?.apply(result.changes)
                applied += result.consumedEntries
                try afterBatch(batch)
            } catch {
                feed.batchRolledBack()
                throw error
            }
        }
        return applied
    }

    /// Table versus definition, and (when given) cache versus table.
    static func divergence(_ connection: PostgresConnection, cache: ExploreIndex? = nil) throws
        -> (table: ProjectionVerifier.Report, cache: ProjectionVerifier.Report?)
    {
        let table = try ProjectionVerifier.verifyTable(on: connection)
        guard let cache else { return (table, nil) }
        let rows = try ProjectionStore.copyProjectionRows(on: connection)
        return (table, ProjectionVerifier.compare(cache: cache, with: rows))
    }

    static func count(_ connection: PostgresConnection, _ sql: String) throws -> Int64 {
        try connection.query(sql).first?.decode(0, as: Int64.self) ?? -1
    }

    static func sleepMilliseconds(_ milliseconds: Int) {
        usleep(useconds_t(milliseconds * 1_000))
    }
}
