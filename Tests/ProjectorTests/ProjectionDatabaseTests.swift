import DemoData
import Dispatch
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

/// The projection against a real PostgreSQL: definition, build, feed, refresh, bootstrap and verification.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProjectionDatabaseTests {
    /// One migrated, seeded, built database; the feed and a cache bootstrapped from it.
    private func withBuiltProjection(
        _ body: (PostgresConnection, inout OutboxFeedStateMachine, ExploreIndex) throws -> Void
    ) throws {
        try ProjectorFixtures.withSeededDatabase { configuration, connection in
            #expect(try ProjectionStore.buildIfNeeded(on: connection))
            #expect(try !ProjectionStore.buildIfNeeded(on: connection))
            let (store, checkpoint) = try ProjectionStore.loadCache(on: connection)
            let index = ExploreIndex(store: store)
            var feed = OutboxFeedStateMachine(checkpoint: checkpoint.position, pageSize: 7)
            try body(connection, &feed, index)
        }
    }

    @Test func embeddedDefinitionIsTheProjectionFile() throws {
        let file = try readFile(ProjectorFixtures.repositoryRoot + "/projections/explore_listings.sql")
        #expect(file.trimmingSuffixNewlines() == ProjectionDefinition.template.trimmingSuffixNewlines())
    }

    /// The recompute filters every listing-keyed table by the ids (so each is read by index), and the whole
    /// read model keeps no marker.
    @Test func restrictionMarkersCoverEveryListingKeyedTable() {
        #expect(ProjectionDefinition.restrictedColumns == ["d.listing_id", "e.listing_id", "m.listing_id", "l.id"])
        let code = ProjectionDefinition.fullQuery.split(separator: "\n").filter { !$0.hasPrefix("--") }.joined()
        #expect(!code.contains("ANY(") && !code.contains("{{"))
        let restricted = ProjectionDefinition.restrictedQuery(parameter: 2)
        for column in ProjectionDefinition.restrictedColumns {
            #expect(restricted.contains("AND \(column) = ANY($2::bigint[])"))
        }
    }

    /// The materialized view from migration 0010 and the view of the migrations' canonical explore_listings both
    /// parse to the same query as the definition.
    @Test func migrationObjectsMatchTheDefinition() throws {
        try TestPostgres.withDatabase { configuration in
            try ProjectorFixtures.migrate(configuration)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript(
                "CREATE VIEW public.definition_check AS \(ProjectionDefinition.fullQuery)")
            let parsed = try connection.query("""
                SELECT pg_get_viewdef('public.definition_check'::regclass),
                       pg_get_viewdef('explore.explore_listings_mv'::regclass),
                       pg_get_viewdef('explore.explore_listings'::regclass)
                """)
            let row = try #require(parsed.first)
            #expect(row[0] != nil && row[0] == row[1])
            #expect(row[0] == row[2])
        }
    }

    /// Differential: the Swift visibility rule agrees with the server's `pg_visible_in_snapshot` on a real
    /// snapshot with transactions in progress.
    @Test func snapshotVisibilityAgreesWithTheServer() throws {
        try TestPostgres.withDatabase { configuration in
            let observer = try PostgresConnection.connect(configuration)
            defer { observer.close() }
            let writers = try (0..<4).map { _ in try PostgresConnection.connect(configuration) }
            defer { for writer in writers { writer.close() } }
            var assigned: [UInt64] = []
            for writer in writers {
                try writer.executeScript("BEGIN")
                assigned.append(try #require(try writer.query("SELECT pg_current_xact_id()::text").first?
                    .decode(0, as: Int64.self)).magnitude)
            }
            try writers[1].executeScript("COMMIT")
            try writers[2].executeScript("ROLLBACK")
            let text = try #require(try observer.query("SELECT pg_current_snapshot()::text").first?[0])
            let snapshot = try TransactionSnapshot(text: text)
            // xmax is one past the latest completed transaction, so the newest running one lies beyond it.
            // Other tests share the cluster, so other transactions may be listed too.
            #expect(snapshot.inProgress.contains(assigned[0]) && !snapshot.inProgress.contains(assigned[1]))
            #expect(!snapshot.isVisible(assigned[3]) && snapshot.isVisible(assigned[1]))
            let xids = Array((snapshot.xmin > 3 ? snapshot.xmin - 3 : 0)...(snapshot.xmax + 3))
            let server = try observer.query("""
                SELECT x, pg_visible_in_snapshot(x::text::xid8, $1::pg_snapshot)
                FROM unnest($2::bigint[]) AS x ORDER BY x
                """, [text, ProjectionStore.int8Array(xids.map { Int64($0) })])
            for row in server {
                let xid = try row.decode(0, as: Int64.self)
                #expect(snapshot.isVisible(UInt64(xid)) == (try row.decode(1, as: Bool.self)), "xid \(xid)")
            }
            for writer in writers { try? writer.executeScript("ROLLBACK") }
        }
    }

    @Test func initialBuildMatchesTheDefinitionAndTheCacheMatchesTheTable() throws {
        try withBuiltProjection { connection, _, index in
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty)
            #expect(table.compared == 108)
            #expect(cache?.isClean == true)
            #expect(index.count == 108)
            #expect(try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox") == 0)
        }
    }

    /// An apply connection's warm-up runs the defining query for its sample (every listing of a small projection)
    /// and changes nothing, on an empty projection too.
    @Test func warmingUpAConnectionChangesNothing() throws {
        try ProjectorFixtures.withSeededDatabase { _, connection in
            func state() throws -> [String?] {
                try connection.query("""
                    SELECT (SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM explore.listings_projection p),
                           (SELECT count(*) FROM explore.change_outbox)::text,
                           (SELECT string_agg(c::text, ',') FROM explore.checkpoint c)
                    """).first.map { row in (0..<row.count).map { row[$0] } } ?? []
            }
            #expect(try ProjectionStore.warmUp(on: connection) == 0)
            #expect(try ProjectionStore.buildIfNeeded(on: connection))
            // With the planner's row count (108) known, the sample is still every listing.
            try connection.executeScript("ANALYZE explore.listings_projection")
            let before = try state()
            #expect(before[0] != nil)
            #expect(try ProjectionStore.warmUp(on: connection) == 108)
            #expect(try state() == before)
        }
    }

    /// Verification must be able to fail: break the table behind the projector's back.
    @Test func verificationReportsMissingExtraAndDifferingRows() throws {
        try withBuiltProjection { connection, _, index in
            try connection.executeScript("""
                DELETE FROM explore.listings_projection WHERE id = 1;
                UPDATE explore.listings_projection SET title = 'tampered' WHERE id = 3;
                INSERT INTO explore.listings_projection (id, listing_type, status, title, location_id, created_at)
                    VALUES (999999, 'existing', 'published', 'ghost', 1, now());
                """)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.missing == [1] && table.extra == [999999] && table.differing == [3])
            let sampled = try ProjectionVerifier.verifyTable(on: connection, sample: 1_000, settle: .milliseconds(500))
            #expect(sampled.missing == [1] && sampled.extra == [999999] && sampled.differing == [3])
            #expect(cache?.differing == [3])
            #expect(cache?.missing == [999999])
            #expect(cache?.extra == [1])
        }
    }

    /// A difference that goes away while verification re-checks it is a change on its way (nothing in the outbox
    /// explains it, as under a Kafka feed): pending, not divergence. One that lasts is divergence.
    @Test func differencesThatSettleArePendingAndLastingOnesDiverge() throws {
        try withBuiltProjection { connection, _, _ in
            try connection.executeScript("""
                UPDATE explore.listings_projection SET title = 'behind' WHERE id = 3;
                UPDATE explore.listings_projection SET title = 'wrong' WHERE id = 5;
                """)
            let configuration = connection.configuration
            let caughtUp = DispatchSemaphore(value: 0)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(700)) {
                defer { caughtUp.signal() }
                guard let other = try? PostgresConnection.connect(configuration) else { return }
                defer { other.close() }
                try? other.executeScript("UPDATE explore.listings_projection SET title = 'Listing 3' WHERE id = 3")
            }
            let report = try ProjectionVerifier.verifyTable(on: connection, settle: .seconds(5))
            caughtUp.wait()
            #expect(report.differing == [5])
            #expect(report.pending == [3])
            #expect(report.missing.isEmpty && report.extra.isEmpty && !report.isClean)
            let immediate = try ProjectionVerifier.verifyTable(on: connection, settle: .zero)
            #expect(immediate.differing == [5] && immediate.pending.isEmpty)
        }
    }

    /// Every kind of base-table change reaches the table and the cache, and a location change fans out.
    @Test func changesOfEverySourceAreApplied() throws {
        try withBuiltProjection { connection, feed, index in
            try connection.executeScript("""
                UPDATE property.listings SET title = 'Renamed' WHERE id = 2;
                UPDATE property.listings SET status = 'archived' WHERE id = 4;
                UPDATE property.listings SET status = 'published' WHERE id = 10;
                UPDATE property.developments SET price_to = price_to + 1 WHERE listing_id = 6;
                UPDATE property.existing_properties SET bedrooms = 9 WHERE listing_id = 7;
                INSERT INTO property.media (listing_id, url, is_primary, position) VALUES (8, 'https://x.example/8', true, 0);
                DELETE FROM property.media WHERE listing_id = 9;
                UPDATE property.locations SET city = 'Renamed City' WHERE id = 2;
                DELETE FROM property.listings WHERE id = 11;
                """)
            let applied = try ProjectorFixtures.drain(connection, feed: &feed, index: index)
            #expect(applied > 0)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty)
            #expect(cache?.isClean == true)
            let renamed = index.rows(ids: [2, 4, 10, 11])
            #expect(renamed.map(\.id) == [2, 10])
            #expect(renamed.first?.title == "Renamed")
            let atLocation = try ProjectorFixtures.count(connection, """
                SELECT count(*) FROM explore.listings_projection WHERE location_id = 2 AND city = 'Renamed City'
                """)
            #expect(atLocation > 0)
            #expect(try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox") == 0)
        }
    }

    /// The trap, on the server: the transaction with the lower outbox id commits after the higher one has been
    /// applied. Its change must still be applied.
    @Test func lowerOutboxIDCommittingLaterIsApplied() throws {
        try withBuiltProjection { connection, feed, index in
            let early = try PostgresConnection.connect(connection.configuration)
            let late = try PostgresConnection.connect(connection.configuration)
            defer { early.close(); late.close() }
            try early.executeScript("BEGIN; UPDATE property.listings SET title = 'early' WHERE id = 3")
            try late.executeScript("BEGIN; UPDATE property.listings SET title = 'late' WHERE id = 5; COMMIT")
            try ProjectorFixtures.drain(connection, feed: &feed, index: index)
            #expect(index.rows(ids: [5]).first?.title == "late")
            #expect(index.rows(ids: [3]).first?.title == "Listing 3")
            let lowestPending = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
            #expect(lowestPending == 0)
            try early.executeScript("COMMIT")
            let ids = try connection.query("SELECT id FROM explore.change_outbox ORDER BY id")
            #expect(ids.count == 1)
            try ProjectorFixtures.drain(connection, feed: &feed, index: index)
            #expect(index.rows(ids: [3]).first?.title == "early")
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty && cache?.isClean == true)
        }
    }

    /// A failure just before COMMIT changes nothing: the checkpoint, the outbox and the table stay, and the next
    /// attempt applies each entry once.
    @Test func failureMidTransactionNeitherLosesNorDoubleApplies() throws {
        try withBuiltProjection { connection, feed, index in
            try connection.executeScript("UPDATE property.existing_properties SET price = price + 1")
            let entries = try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox")
            let before = try ProjectionStore.checkpoint(on: connection)
            struct Crash: Error {}
            #expect(throws: ProjectorError.self) {
                try ProjectorFixtures.drain(connection, feed: &feed, index: nil, beforeCommit: { throw Crash() })
            }
            #expect(try ProjectionStore.checkpoint(on: connection) == before)
            #expect(try ProjectorFixtures.count(connection, "SELECT count(*) FROM explore.change_outbox") == entries)
            #expect(try ProjectionVerifier.verifyTable(on: connection).pending.count > 0)
            let applied = try ProjectorFixtures.drain(connection, feed: &feed, index: index)
            #expect(Int64(applied) == entries)
            let after = try ProjectionStore.checkpoint(on: connection)
            #expect(after.appliedChanges == before.appliedChanges + entries)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty && cache?.isClean == true)
        }
    }

    /// A stale checkpoint (another projector moved on) is refused instead of applied twice.
    @Test func staleCheckpointIsRefused() throws {
        try withBuiltProjection { connection, feed, _ in
            var stale = feed
            try connection.executeScript("UPDATE property.listings SET title = 'one' WHERE id = 3")
            try ProjectorFixtures.drain(connection, feed: &feed)
            try connection.executeScript("UPDATE property.listings SET title = 'two' WHERE id = 3")
            #expect {
                try ProjectorFixtures.drain(connection, feed: &stale)
            } throws: { error in
                (error as? ProjectorError)?.code == .checkpointConflict
            }
        }
    }

    /// Column recomputes come from the definition: a type table's edit recomputes the coalesced prices and the
    /// rooms (reading both type tables), a media edit the image; the listings table and locations never qualify,
    /// and neither does a table the definition starts to use anywhere else.
    @Test func columnRecomputesFollowTheDefinition() throws {
        let prices = try #require(ProjectionDefinition.columnRecompute(covering: [.existingProperties]))
        #expect(prices.columns == ["price_from", "price_to", "bedrooms", "bathrooms"])
        #expect(prices.sources == [.developments, .existingProperties])
        #expect(ProjectionDefinition.columnRecompute(covering: [.developments]) == prices)
        #expect(ProjectionDefinition.columnRecompute(covering: [.media])?.columns == ["primary_image_url"])
        // Price and room edits reach the cache as rows keeping its text; an image edit brings new text.
        #expect(ProjectionRowDecoder.textColumns.isSubset(of: ProjectionDefinition.columns))
        #expect(prices.keepsText && ProjectionDefinition.columnRecompute(covering: [.media])?.keepsText == false)
        #expect(ProjectionDefinition.columnRecompute(covering: [.developments, .media])?.columns
            == ["price_from", "price_to", "bedrooms", "bathrooms", "primary_image_url"])
        for sources: Set<ProjectionDefinition.Source> in [[], [.listings], [.locations], [.media, .listings]] {
            #expect(ProjectionDefinition.columnRecompute(covering: sources) == nil)
        }
        let query = ProjectionDefinition.fullQuery
        let shape = try #require(QueryShape(query))
        #expect(shape.eligibleAlias(of: .developments) == "d")
        #expect(shape.eligibleAlias(of: .locations) == nil && shape.eligibleAlias(of: .listings) == nil)
        // A type table that decides visibility, or that another join depends on, needs the whole row.
        let filtered = try #require(QueryShape(query.replacing(
            "WHERE l.status IN ('published', 'active')",
            with: "WHERE l.status IN ('published', 'active') AND d.price_from IS NOT NULL")))
        #expect(filtered.eligibleAlias(of: .developments) == nil && filtered.eligibleAlias(of: .media) == "m")
        let chained = try #require(QueryShape(query.replacing(
            "m.listing_id = l.id AND m.is_primary", with: "m.listing_id = l.id AND m.position = e.bedrooms")))
        #expect(chained.eligibleAlias(of: .existingProperties) == nil)
        #expect(QueryShape("SELECT 1") == nil)
    }

    /// A price batch must not write a row whose other columns have a change pending (a title edited after the
    /// price, in a later batch): the listing is recomputed whole instead, so every row a batch writes is the row
    /// the definition gives at that moment. Then random edits of every table, drained in small batches, with the
    /// same check after each batch and a clean verification at the end.
    @Test func everyBatchWritesTheRowsTheDefinitionGives() throws {
        try withBuiltProjection { connection, feed, index in
            try connection.executeScript("""
                UPDATE property.existing_properties SET price = price + 1 WHERE listing_id <= 60;
                UPDATE property.developments SET price_to = price_to + 1 WHERE listing_id <= 60;
                UPDATE property.listings SET title = title || ' (new)' WHERE id <= 30;
                """)
            // The statement alone, as a batch of the price entries would run it: listings with a title pending come
            // back for the whole recompute, the others are updated (listing 40 is a draft, not in the table).
            let prices = try #require(ProjectionDefinition.columnRecompute(covering: [.existingProperties]))
            try connection.executeScript("BEGIN; DELETE FROM explore.change_outbox WHERE source <> 'listings'")
            let answer = try connection.query(prices.statement, [ProjectionStore.int8Array(Array(1...40))])
            try connection.executeScript("ROLLBACK")
            func ids(_ kind: String) -> [Int64] {
                answer.filter { $0[0] == kind }.compactMap { $0[1].flatMap { Int64($0) } }
            }
            #expect(ids("f").sorted() == Array(1...30))
            #expect(ids("u").sorted() == Array(31...39))

            var columnBatches = 0
            func check(_ batch: ChangeSet) throws {
                if !batch.columnRecomputes.isEmpty { columnBatches += 1 }
                #expect(try ProjectionVerifier.differences(connection, ids: batch.allListingIDs).isEmpty)
            }
            try ProjectorFixtures.drain(connection, feed: &feed, index: index, maximumKeys: 8, afterBatch: check)
            #expect(columnBatches > 0)
            #expect(index.rows(ids: [1]).first?.title == "Listing 1 (new)")

            var random = SplitMix64(seed: 7)
            for round in 0..<12 {
                var script = "BEGIN;"
                for _ in 0..<(5 + random.next() % 20) {
                    let id = 1 + random.next() % 120
                    let statement = switch random.next() % 9 {
                    case 0, 1:
                        "UPDATE property.existing_properties SET price = price + \(round + 1) WHERE listing_id = \(id);"
                    case 2: "UPDATE property.developments SET price_from = price_from - 1 WHERE listing_id = \(id);"
                    case 3:
                        "UPDATE property.existing_properties SET bedrooms = \(random.next() % 6) "
                            + "WHERE listing_id = \(id);"
                    case 4: "DELETE FROM property.existing_properties WHERE listing_id = \(id);"
                    case 5: "UPDATE property.media SET url = url || '?v=\(round)' WHERE listing_id = \(id);"
                    case 6: "UPDATE property.listings SET title = 'T\(round)' WHERE id = \(id);"
                    case 7: "UPDATE property.listings SET status = CASE status WHEN 'published' THEN 'archived' "
                        + "ELSE 'published' END WHERE id = \(id) AND status <> 'draft';"
                    default: "UPDATE property.locations SET area = area || '.' WHERE id = \(1 + id % 6);"
                    }
                    script += statement
                    if random.next() % 3 == 0 { script += "COMMIT; BEGIN;" }
                }
                try connection.executeScript(script + "COMMIT;")
                try ProjectorFixtures.drain(connection, feed: &feed, index: index,
                                            maximumKeys: Int(1 + random.next() % 12), afterBatch: check)
            }
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty && cache?.isClean == true)
        }
    }

    /// A listing whose location was deleted (possible once the foreign key is gone) keeps the defining query's
    /// semantics: it stays, with no city or area; the cache holds empty names.
    @Test func listingWhoseLocationWasDeletedFollowsTheDefinition() throws {
        try withBuiltProjection { connection, feed, index in
            try connection.executeScript("""
                ALTER TABLE property.listings DROP CONSTRAINT listings_location_id_fkey;
                DELETE FROM property.locations WHERE id = 3;
                """)
            try ProjectorFixtures.drain(connection, feed: &feed, index: index)
            let (table, cache) = try ProjectorFixtures.divergence(connection, cache: index)
            #expect(table.isClean && table.pending.isEmpty && cache?.isClean == true)
            let orphans = try ProjectorFixtures.count(connection, """
                SELECT count(*) FROM explore.listings_projection WHERE location_id = 3 AND city IS NULL
                """)
            #expect(orphans > 0)
            let orphan = try #require(try connection.query(
                "SELECT min(id) FROM explore.listings_projection WHERE location_id = 3").first?.decode(0, as: Int64.self))
            #expect(index.rows(ids: [orphan]).first?.city == "")
        }
    }
}

struct FileMissing: Error { var path: String }

func readFile(_ path: String) throws -> String {
    guard let file = fopen(path, "r") else { throw FileMissing(path: path) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension String {
    func trimmingSuffixNewlines() -> Substring {
        var text = Substring(self)
        while text.last == "\n" { text.removeLast() }
        return text
    }
}
