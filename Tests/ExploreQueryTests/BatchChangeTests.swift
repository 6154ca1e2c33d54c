import ExploreQuery
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Batches in which the same listing changes several times, against ``ReferenceSearch`` (which applies changes
/// one by one): the cache applies only each id's last change, so whatever came before it in the batch (a
/// delete, a new row, a price gained or lost, a move to another group, a freed slot) must leave no trace.
@Suite struct BatchChangeTests {
    /// `row` with one thing moved: its price (lost, gained, shifted), its cube group, its text or its keys.
    static func variation(of row: ExploreListing, _ generator: inout RandomListings) -> ExploreListing {
        var row = row
        switch Int.random(in: 0..<7, using: &generator.random) {
        case 0:
            row.priceFrom = nil
            row.priceTo = nil
        case 1:
            row.priceFrom = 300_000
            row.priceTo = row.listingType == .development ? 500_000 : 300_000
        case 2:
            row.priceFrom = row.priceFrom.map { $0 + 10_000 }
            row.priceTo = row.priceTo.map { $0 + 10_000 }
        case 3:
            row.city = RandomListings.cities.randomElement(using: &generator.random)!
            row.status = RandomListings.statuses.randomElement(using: &generator.random)!
        case 4:
            row.listingType = row.listingType == .existing ? .development : .existing
            row.bedrooms = row.bedrooms == nil ? 2 : nil
        case 5:
            row.title += " (edited)"
            row.primaryImageURL = row.primaryImageURL == nil ? "https://img.example/new.jpg" : nil
        default:
            row.createdAt += 3_000_000
            row.locationID = row.locationID % 12 + 1
            row.area = RandomListings.areas.randomElement(using: &generator.random)!
        }
        return row
    }

    /// Checks counts, rows by id, random queries and a cursor walk of every order.
    static func checkAll(_ index: ExploreIndex, _ reference: ReferenceSearch, ids: [ListingID],
                         _ generator: inout RandomListings) throws {
        #expect(index.count == reference.rows.count)
        #expect(index.rows(ids: ids) == ids.compactMap { reference.rows[$0] })
        for _ in 0..<10 { try DifferentialTests.check(index, reference, DifferentialTests.randomQuery(&generator)) }
        for sort in SortOrder.allCases {
            try DifferentialTests.checkCursorWalk(index, reference, filter: SearchFilter(), sort: sort, limit: 50)
        }
    }

    /// Few ids, each changed several times per batch: variations, deletes, re-inserts, brand-new rows; deleted
    /// slots are reused by later batches. Batches of 30 ids are applied phase after phase, batches of 150 with
    /// the phases in parallel (from 64 listings on).
    @Test(arguments: [(UInt64(21), 30), (22, 30), (23, 150), (24, 150)])
    func repeatedIDsInOneBatch(seed: UInt64, idsPerBatch: Int) throws {
        var generator = RandomListings(seed: seed, idRange: 1...300)
        var (reference, index) = ReferenceSearch.loaded((1...200).map { generator.listing(id: Int64($0)) })
        for _ in 0..<25 {
            let ids = (0..<idsPerBatch).map { _ in generator.id() }
            var current = reference.rows
            var changes: [ListingChange] = []
            for _ in 0..<(4 * idsPerBatch) {
                let id = ids.randomElement(using: &generator.random)!
                if generator.chance(25) {
                    changes.append(.delete(id))
                    current[id] = nil
                    continue
                }
                let row = generator.chance(70)
                    ? Self.variation(of: current[id] ?? generator.listing(id: id), &generator)
                    : generator.listing(id: id)
                current[id] = row
                changes.append(.upsert(row))
            }
            let batch = ListingChangeBatch(changes)
            index.apply(batch)
            reference.apply(batch)
            try Self.checkAll(index, reference, ids: ids, &generator)
        }
    }

    /// Named sequences for one id inside a batch, each beside changes to other rows.
    @Test func explicitSequences() throws {
        var generator = RandomListings(seed: 31, idRange: 1...100)
        var (reference, index) = ReferenceSearch.loaded((1...60).map { generator.listing(id: Int64($0)) })

        func existing(_ id: ListingID) -> ExploreListing { reference.rows[id]! }
        var priced = generator.listing(id: 500)
        priced.priceFrom = 200_000
        priced.priceTo = 200_000
        var unpriced = priced
        unpriced.priceFrom = nil
        unpriced.priceTo = nil
        func repriced(_ row: ExploreListing) -> ExploreListing {
            var row = row
            row.priceFrom = row.priceFrom.map { $0 + 1_000 }
            row.priceTo = row.priceTo.map { $0 + 1_000 }
            return row
        }
        func renamed(_ row: ExploreListing) -> ExploreListing {
            var row = row
            row.title += " (renamed)"
            row.city = RandomListings.cities.first { $0 != row.city }!
            return row
        }
        let sequences: [(name: String, changes: [ListingChange])] = [
            ("delete then re-insert", [.delete(1), .upsert(Self.variation(of: existing(1), &generator))]),
            ("change then delete", [.upsert(Self.variation(of: existing(2), &generator)), .delete(2)]),
            ("new row then delete", [.upsert(generator.listing(id: 501)), .delete(501)]),
            ("delete of an unknown id", [.delete(502)]),
            ("freed slot and new rows", [.delete(3), .delete(4), .upsert(generator.listing(id: 503)),
                                         .upsert(generator.listing(id: 504))]),
            ("price gained then lost", [.upsert(priced), .upsert(unpriced)]),
            ("price lost then gained", [.upsert(unpriced), .upsert(priced)]),
            ("back to the stored row", [.upsert(Self.variation(of: existing(5), &generator)), .upsert(existing(5))]),
            ("identical row", [.upsert(existing(6))]),
            ("deleted twice, re-inserted twice", [.delete(7), .delete(7), .upsert(existing(7)), .delete(7),
                                                  .upsert(Self.variation(of: existing(7), &generator))]),
            // The store keeps its text for the first; the second's text is the batch's, not the stored one; the
            // third's listing has no text stored yet.
            ("price edit keeping the text", [.upsertKeepingText(repriced(existing(8)))]),
            ("renamed, then an edit keeping the new text",
             [.upsert(renamed(existing(9))), .upsertKeepingText(repriced(renamed(existing(9))))]),
            ("new row keeping text it lacks", [.upsertKeepingText(generator.listing(id: 505))]),
        ]
        for sequence in sequences {
            var changes = sequence.changes
            for _ in 0..<5 {
                let id = Int64.random(in: 10...60, using: &generator.random)
                if let row = reference.rows[id] { changes.append(.upsert(Self.variation(of: row, &generator))) }
            }
            let batch = ListingChangeBatch(changes)
            index.apply(batch)
            reference.apply(batch)
            let ids = changes.map(\.id)
            #expect(index.rows(ids: ids) == ids.compactMap { reference.rows[$0] }, "\(sequence.name)")
            try Self.checkAll(index, reference, ids: ids, &generator)
        }
    }

    /// Long titles and image URLs replaced batch after batch, with a rebuild swapped in between: the arenas are
    /// rewritten as their garbage grows (outside the write lock), so memory stays bounded, every row reads back
    /// as last written, and a rewrite prepared for a store that a rebuild replaced is never put into the new one.
    @Test func replacedStringsAreReclaimedAndReadBack() throws {
        var generator = RandomListings(seed: 31, idRange: 1...2_000)
        let padding = String(repeating: "x", count: 400)
        func long(_ row: ExploreListing, _ round: Int) -> ExploreListing {
            var row = row
            row.title = "\(round) \(row.id) \(padding)"
            row.primaryImageURL = round % 3 == 0 ? nil : "https://img.example/\(round)/\(row.id)/\(padding)"
            return row
        }
        var (reference, index) = ReferenceSearch.loaded((1...2_000).map { long(generator.listing(id: Int64($0)), 0) })
        let startBytes = index.memoryBytes
        let ids = (1...2_000).map(Int64.init)
        for round in 1...40 {
            let batch = ListingChangeBatch(ids.compactMap { reference.rows[$0] }.map { .upsert(long($0, round)) })
            index.apply(batch)
            reference.apply(batch)
            if round == 20 { index.replace(with: ExploreStore(bulk: ids.compactMap { reference.rows[$0] })) }
            #expect(index.rows(ids: ids) == ids.compactMap { reference.rows[$0] }, "round \(round)")
        }
        // 40 rounds wrote about 30 MB of strings; about 1.6 MB are live.
        #expect(index.memoryBytes < startBytes + 8 << 20, "\(index.memoryBytes) bytes after, \(startBytes) before")
        try Self.checkAll(index, reference, ids: ids, &generator)
    }

    /// The index lays its store out again in the background while batches keep coming (a low threshold makes
    /// it do so again and again): each relayout carries every batch applied while it copied, loaded and caught
    /// up, and the answers match the reference throughout and after the last one.
    @Test(arguments: [UInt64(31), 32])
    func relayoutsCarryEveryBatchAppliedMeanwhile(seed: UInt64) throws {
        var generator = RandomListings(seed: seed, idRange: 1...4_000)
        let rows = (1...1_500).map { generator.listing(id: Int64($0)) }
        var reference = ReferenceSearch()
        for row in rows { reference.rows[row.id] = row }
        let index = ExploreIndex(store: ExploreStore(bulk: rows), relayoutThreshold: 0.01)
        for step in 0..<300 {
            let batch = generator.changes(count: 25)
            index.apply(batch)
            reference.apply(batch)
            if step % 25 == 0 {
                try Self.checkAll(index, reference, ids: Array(1...4_000), &generator)
            }
        }
        index.settleRelayouts(minimum: 1)
        #expect(index.relayoutsCompleted >= 3, "relayouts happened")
        try Self.checkAll(index, reference, ids: Array(1...4_000), &generator)
    }

    /// A rebuild swapped in while a relayout is under way wins: the relayout, copied from the store replaced, is
    /// dropped, and the index ends as the rebuilt rows plus the batches applied after them.
    @Test func aRebuildDropsTheRelayoutUnderWay() throws {
        var generator = RandomListings(seed: 41, idRange: 1...4_000)
        let index = ExploreIndex(store: ExploreStore(bulk: (1...1_500).map { generator.listing(id: Int64($0)) }),
                                 relayoutThreshold: 0.01)
        var reference = ReferenceSearch()
        for round in 0..<20 {
            for _ in 0..<4 { index.apply(generator.changes(count: 25)) }
            // Every few batches a relayout starts; the rebuild lands while it copies, loads or catches up.
            let rebuilt = (1...1_000).map { generator.listing(id: Int64(round * 100 + $0)) }
            reference = ReferenceSearch()
            for row in rebuilt { reference.rows[row.id] = row }
            index.replace(with: ExploreStore(bulk: rebuilt))
            for _ in 0..<3 {
                let batch = generator.changes(count: 25)
                index.apply(batch)
                reference.apply(batch)
            }
        }
        for _ in 0..<50 {
            index.apply(ListingChangeBatch([]))
            usleep(2_000)
        }
        try Self.checkAll(index, reference, ids: Array(1...4_000), &generator)
    }
}
