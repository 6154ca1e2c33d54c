import ExploreQuery
import Testing

/// The index against ``ReferenceSearch`` on random data, random change sequences and random queries.
@Suite struct DifferentialTests {
    /// Checks one query's total, page, facets and next cursor against the reference.
    static func check(_ index: ExploreIndex, _ reference: ReferenceSearch, _ query: SearchQuery,
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = reference.sorted(query.filter, query.sort)
        let result = try index.search(query)
        #expect(result.total == (query.includeTotal ? expected.count : nil), sourceLocation: sourceLocation)
        var skip = 0
        if case .offset(let offset) = query.start { skip = offset }
        let page = Array(expected.dropFirst(skip).prefix(query.limit))
        #expect(result.rows == page, "page for \(query.filter) \(query.sort)", sourceLocation: sourceLocation)
        #expect((result.nextCursor != nil) == (expected.count > skip + query.limit), sourceLocation: sourceLocation)
        let facets = FacetField.allCases.filter { query.facets.contains($0) }.map { reference.facet($0, query.filter) }
        #expect(result.facets == facets, "facets for \(query.filter)", sourceLocation: sourceLocation)
    }

    /// Walks every page with cursors and compares the concatenation with the reference order.
    static func checkCursorWalk(_ index: ExploreIndex, _ reference: ReferenceSearch, filter: SearchFilter,
                                sort: SortOrder, limit: Int) throws {
        let expected = reference.sorted(filter, sort).map(\.id)
        var query = SearchQuery(filter: filter, sort: sort, limit: limit, includeTotal: false)
        var seen: [ListingID] = []
        for _ in 0...(expected.count / limit + 1) {
            let result = try index.search(query)
            seen += result.rows.map(\.id)
            guard let cursor = result.nextCursor else { break }
            query.start = .after(cursor)
        }
        #expect(seen == expected, "cursor walk for \(filter) \(sort) limit \(limit)")
    }

    static func randomQuery(_ generator: inout RandomListings) -> SearchQuery {
        var query = SearchQuery(filter: generator.filter(), sort: SortOrder.allCases.randomElement(using: &generator.random)!)
        query.limit = [1, 3, 7, 20, 100].randomElement(using: &generator.random)!
        if generator.chance(30) { query.start = .offset(Int.random(in: 0...60, using: &generator.random)) }
        query.includeTotal = generator.chance(80)
        query.facets = Set(FacetField.allCases.filter { _ in generator.chance(40) })
        return query
    }

    /// The last case spans several 4,096-slot blocks, so block skipping and cross-block facets are covered.
    @Test(arguments: [(UInt64(1), 0, 40), (2, 60, 200), (3, 500, 2000), (4, 3000, 6000), (5, 20_000, 26_000)])
    func bulkLoadThenChanges(seed: UInt64, initial: Int, idSpace: Int) throws {
        var generator = RandomListings(seed: seed, idRange: 1...Int64(idSpace))
        var initialRows: [ExploreListing] = []
        for _ in 0..<initial { initialRows.append(generator.listing(id: generator.id())) }
        var (reference, index) = ReferenceSearch.loaded(initialRows)
        #expect(index.count == reference.rows.count)

        for round in 0..<12 {
            for _ in 0..<15 { try Self.check(index, reference, Self.randomQuery(&generator)) }
            let sort = SortOrder.allCases[round % SortOrder.allCases.count]
            try Self.checkCursorWalk(index, reference, filter: generator.filter(), sort: sort,
                                     limit: [1, 5, 50].randomElement(using: &generator.random)!)
            let batch = generator.changes(count: Int.random(in: 1...max(2, idSpace / 8), using: &generator.random))
            index.apply(batch)
            reference.apply(batch)
            #expect(index.count == reference.rows.count)
            let someIDs = (0..<20).map { _ in generator.id() }
            #expect(index.rows(ids: someIDs) == someIDs.compactMap { reference.rows[$0] })
        }
    }

    /// Ten 4,096-slot blocks, changes that free, reuse and append slots across block boundaries, and rows
    /// moving between cube groups: block skipping, cube counts and row walks against the reference at scale.
    @Test func largeStoreAcrossBlocks() throws {
        var generator = RandomListings(seed: 41, idRange: 1...60_000)
        var initialRows: [ExploreListing] = []
        for id in 1...40_000 where id % 7 != 0 { initialRows.append(generator.listing(id: Int64(id))) }
        var (reference, index) = ReferenceSearch.loaded(initialRows)
        #expect(index.count == reference.rows.count)
        for round in 0..<6 {
            for _ in 0..<16 { try Self.check(index, reference, Self.randomQuery(&generator)) }
            let sort = SortOrder.allCases[round % SortOrder.allCases.count]
            try Self.checkCursorWalk(index, reference, filter: generator.filter(), sort: sort, limit: 1_000)
            var changes: [ListingChange] = []
            for _ in 0..<4_000 {
                let id = generator.id()
                if generator.chance(30) {
                    changes.append(.delete(id))
                } else if generator.chance(50), var row = reference.rows[id] {
                    // A price-only move of an existing row (told to keep its text, as the projector's price
                    // recomputes are: an earlier change of the batch may have changed it), or a group-only one.
                    if generator.chance(50) {
                        row.priceFrom = row.priceFrom.map { $0 + 25_000 }
                        row.priceTo = row.priceTo.map { $0 + 25_000 }
                        changes.append(.upsertKeepingText(row))
                    } else {
                        row.city = RandomListings.cities.randomElement(using: &generator.random)!
                        row.bedrooms = row.bedrooms.map { ($0 + 1) % 6 }
                        changes.append(.upsert(row))
                    }
                } else {
                    changes.append(.upsert(generator.listing(id: id)))
                }
            }
            let batch = ListingChangeBatch(changes)
            index.apply(batch)
            reference.apply(batch)
            #expect(index.count == reference.rows.count)
        }
        for _ in 0..<16 { try Self.check(index, reference, Self.randomQuery(&generator)) }
    }

    /// Freed slots keep their old range bits until reused; a reused slot must answer for its new row only,
    /// including rows without a price (which must leave every price bitmap) and the price-bucket facet.
    @Test func reusedSlotsForgetTheirPreviousRanges() throws {
        var generator = RandomListings(seed: 7, idRange: 1...5_000)
        var (reference, index) = ReferenceSearch.loaded((1...300).map { generator.listing(id: Int64($0)) })
        let deletes = ListingChangeBatch((1...300).map { ListingChange.delete(Int64($0)) })
        index.apply(deletes)
        reference.apply(deletes)
        var fresh: [ListingChange] = []
        for id in 1_001...1_300 {
            var row = generator.listing(id: Int64(id))
            if id % 2 == 0 { row.priceFrom = nil; row.priceTo = nil }
            fresh.append(.upsert(row))
        }
        let inserts = ListingChangeBatch(fresh)
        index.apply(inserts)
        reference.apply(inserts)
        var filter = SearchFilter()
        filter.priceMax = 400_000
        for query in [SearchQuery(filter: SearchFilter(), sort: .priceAscending, limit: 100, facets: [.priceBucket]),
                      SearchQuery(filter: filter, sort: .newest, limit: 100, facets: [.priceBucket, .city])] {
            try Self.check(index, reference, query)
        }
        for _ in 0..<40 { try Self.check(index, reference, Self.randomQuery(&generator)) }
    }

    @Test func emptyIndexGrownByUpserts() throws {
        var generator = RandomListings(seed: 99, idRange: 1...400)
        var reference = ReferenceSearch()
        let index = ExploreIndex()
        for _ in 0..<10 {
            let batch = generator.changes(count: 80)
            index.apply(batch)
            reference.apply(batch)
            for _ in 0..<20 { try Self.check(index, reference, Self.randomQuery(&generator)) }
            try Self.checkCursorWalk(index, reference, filter: SearchFilter(), sort: .priceDescending, limit: 7)
        }
    }

    @Test func replaceSwapsInABulkStore() throws {
        var generator = RandomListings(seed: 5, idRange: 1...300)
        let index = ExploreIndex()
        index.apply(generator.changes(count: 100))
        var reference = ReferenceSearch()
        let rows = (0..<200).map { _ in generator.listing(id: generator.id()) }
        for row in rows { reference.rows[row.id] = row }
        index.replace(with: ExploreStore(bulk: rows))
        #expect(index.count == reference.rows.count)
        for _ in 0..<30 { try Self.check(index, reference, Self.randomQuery(&generator)) }
    }

    /// Rows change between pages: every row that exists unchanged throughout appears exactly once, in order.
    @Test(arguments: [UInt64(11), 12, 13])
    func cursorSurvivesChangesBetweenPages(seed: UInt64) throws {
        var generator = RandomListings(seed: seed, idRange: 1...600)
        var reference = ReferenceSearch()
        let rows = (0..<400).map { _ in generator.listing(id: generator.id()) }
        for row in rows { reference.rows[row.id] = row }
        let index = ExploreIndex(store: ExploreStore(bulk: rows))
        for sort in SortOrder.allCases {
            let filter = generator.chance(50) ? SearchFilter() : generator.filter()
            let snapshot = reference.rows
            var untouched = Set(snapshot.keys)
            var query = SearchQuery(filter: filter, sort: sort, limit: 9, includeTotal: false)
            var seen: [ExploreListing] = []
            for _ in 0..<400 {
                let result = try index.search(query)
                seen += result.rows
                guard let cursor = result.nextCursor else { break }
                query.start = .after(cursor)
                let batch = generator.changes(count: 6)
                for change in batch.changes { untouched.remove(change.id) }
                index.apply(batch)
                reference.apply(batch)
            }
            let seenIDs = seen.map(\.id)
            let untouchedSeen = seenIDs.filter { untouched.contains($0) }
            #expect(Set(untouchedSeen).count == untouchedSeen.count, "no unchanged row twice")
            let expected = snapshot.values.filter { untouched.contains($0.id) && ReferenceSearch.matches($0, filter) }
            let seenSet = Set(seenIDs)
            #expect(expected.allSatisfy { seenSet.contains($0.id) }, "no unchanged row skipped")
            for (a, b) in zip(seen, seen.dropFirst()) {
                #expect(ReferenceSearch.before(a, b, sort), "pages stay in order")
            }
        }
    }
}
