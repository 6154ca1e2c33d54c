/// Query execution: filter bitmaps, sorted paging, totals and facets.
///
/// Every constrained field `F` becomes one bitmap `B_F` over slots. The match set is the AND of all of them;
/// a facet on `F` counts over the AND of every bitmap except `B_F`, so each bitmap is built once per query and
/// reused. Pages walk the sort order and test the match bitmap per row, or, when matches are so rare that the
/// walk would be long, collect and sort the matches instead.
extension ExploreStore {
    func search(_ plan: SearchPlan) -> SearchResult {
        let query = plan.query
        let words = wordCount
        let fieldBitmaps = filterBitmaps(query.filter, wordCount: words)
        var matches = BitOps.copy(live.words, count: words)
        for (_, bitmap) in fieldBitmaps { BitOps.formIntersection(&matches, bitmap) }
        let total = BitOps.popcount(matches)

        let (rows, nextCursor) = page(plan, matches: matches, matchCount: total)

        var facets: [FacetCounts] = []
        for field in FacetField.allCases where query.facets.contains(field) {
            let base: [UInt64]
            if fieldBitmaps.contains(where: { $0.field == field.ownFilter }) {
                var others = BitOps.copy(live.words, count: words)
                for (filterField, bitmap) in fieldBitmaps where filterField != field.ownFilter {
                    BitOps.formIntersection(&others, bitmap)
                }
                base = others
            } else {
                base = matches
            }
            facets.append(FacetCounts(field: field, counts: facetCounts(field, over: base)))
        }
        return SearchResult(total: query.includeTotal ? total : nil, rows: rows, columns: query.columns,
                            nextCursor: nextCursor, facets: facets)
    }

    // MARK: Filters

    /// One bitmap per constrained field, each `wordCount` words long and a subset of the live rows.
    func filterBitmaps(_ filter: SearchFilter, wordCount words: Int) -> [(field: FilterField, bitmap: [UInt64])] {
        var result: [(field: FilterField, bitmap: [UInt64])] = []
        if let types = filter.listingTypes {
            result.append((.listingType, union(types.map { typePostings[Int($0.rawValue)] }, words)))
        }
        if let statuses = filter.statuses {
            let postings = statuses.compactMap { statusDictionary.code(of: $0).map { statusPostings[Int($0)] } }
            result.append((.status, union(postings, words)))
        }
        if let cities = filter.cities {
            let postings = cities.compactMap { cityDictionary.code(of: $0).map { cityPostings[Int($0)] } }
            result.append((.city, union(postings, words)))
        }
        if let areas = filter.areas {
            var bitmap = [UInt64](repeating: 0, count: words)
            for area in areas {
                if let code = areaDictionary.code(of: area) { areaPostings[Int(code)].setBits(in: &bitmap) }
            }
            result.append((.area, bitmap))
        }
        if let locations = filter.locationIDs {
            var bitmap = [UInt64](repeating: 0, count: words)
            for location in locations { locationPostings[location]?.setBits(in: &bitmap) }
            result.append((.locationID, bitmap))
        }
        if filter.priceMin != nil || filter.priceMax != nil {
            var bitmap = BitOps.copy(priceLowRanges.present.words, count: words)
            if let high = filter.priceMax, high < Int64.max {
                let below = priceLow.withUnsafeBufferPointer { low in
                    priceLowRanges.slotsLess(than: high + 1, wordCount: words) { low[$0] }
                }
                BitOps.formIntersection(&bitmap, below)
            }
            if let low = filter.priceMin {
                let below = priceHigh.withUnsafeBufferPointer { high in
                    priceHighRanges.slotsLess(than: low, wordCount: words) { high[$0] }
                }
                BitOps.subtract(&bitmap, below)
            }
            result.append((.price, bitmap))
        }
        if filter.bedroomsMin != nil || filter.bedroomsMax != nil {
            let low = filter.bedroomsMin ?? Int32.min
            let high = filter.bedroomsMax ?? Int32.max
            result.append((.bedrooms, union(bedroomPostings.filter { $0.key >= low && $0.key <= high }.map(\.value), words)))
        }
        if let low = filter.bathroomsMin {
            result.append((.bathrooms, union(bathroomPostings.filter { $0.key >= low }.map(\.value), words)))
        }
        if filter.createdAfter != nil || filter.createdBefore != nil {
            var bitmap = BitOps.copy(live.words, count: words)
            createdAt.withUnsafeBufferPointer { created in
                if let before = filter.createdBefore {
                    BitOps.formIntersection(&bitmap, createdRanges.slotsLess(than: before, wordCount: words) { created[$0] })
                }
                if let after = filter.createdAfter {
                    BitOps.subtract(&bitmap, createdRanges.slotsLess(than: after, wordCount: words) { created[$0] })
                }
            }
            result.append((.createdAt, bitmap))
        }
        return result
    }

    private func union<Postings: Collection>(_ postings: Postings, _ words: Int) -> [UInt64]
    where Postings.Element == Bitset {
        guard let first = postings.first else { return [UInt64](repeating: 0, count: words) }
        var result = BitOps.copy(first.words, count: words)
        for posting in postings.dropFirst() { BitOps.formUnion(&result, posting.words) }
        return result
    }

    // MARK: Paging

    /// The sort order as a sequence of slot lists (price orders put unpriced rows last, by id).
    private func orderLists(_ sort: SortOrder) -> [SortedSlotList] {
        switch sort {
        case .priceAscending: [priceAscending, unpriced]
        case .priceDescending: [priceDescending, unpriced]
        case .newest: [newestFirst]
        case .oldest: [oldestFirst]
        }
    }

    /// The position of `slot` in `sort`: group, the list's key and the id.
    private func position(of slot: Int, in sort: SortOrder) -> (group: UInt8, key: Int64, id: Int64) {
        let priced = !SlotFlags(rawValue: flags[slot]).isDisjoint(with: [.hasPriceFrom, .hasPriceTo])
        switch sort {
        case .priceAscending: return priced ? (0, priceLow[slot], ids[slot]) : (1, 0, ids[slot])
        case .priceDescending: return priced ? (0, ~priceLow[slot], ids[slot]) : (1, 0, ids[slot])
        case .newest: return (0, ~createdAt[slot], ids[slot])
        case .oldest: return (0, createdAt[slot], ids[slot])
        }
    }

    private func page(_ plan: SearchPlan, matches: [UInt64], matchCount: Int) -> ([ExploreListing], SearchCursor?) {
        let query = plan.query
        let wanted = plan.offset + query.limit + 1
        guard matchCount > 0 else { return ([], nil) }
        // A walk visits about `wanted × live / matches` entries; collecting touches every match and sorts.
        let walkCost = Double(wanted) * Double(count) / Double(matchCount)
        let collectCost = Double(matchCount) * 8
        var slots: [Int] = []
        slots.reserveCapacity(Swift.min(wanted, matchCount))
        if walkCost <= collectCost {
            walkPage(plan, matches: matches, wanted: wanted, into: &slots)
        } else {
            collectPage(plan, matches: matches, wanted: wanted, into: &slots)
        }
        let pageSlots = slots.dropFirst(plan.offset).prefix(query.limit)
        let rows = pageSlots.map { row(slot: $0) }
        var next: SearchCursor?
        if slots.count > plan.offset + query.limit, let last = pageSlots.last {
            let position = position(of: last, in: query.sort)
            next = CursorPosition(sort: query.sort, group: position.group, key: position.key, id: position.id,
                                  fingerprint: plan.fingerprint).encoded()
        }
        return (rows, next)
    }

    private func walkPage(_ plan: SearchPlan, matches: [UInt64], wanted: Int, into slots: inout [Int]) {
        let lists = orderLists(plan.query.sort)
        let startGroup = Int(plan.cursor?.group ?? 0)
        ids.withUnsafeBufferPointer { ids in
            matches.withUnsafeBufferPointer { bits in
                for group in startGroup..<lists.count {
                    let after = group == startGroup ? plan.cursor.map { (key: $0.key, id: $0.id) } : nil
                    let finished = lists[group].walk(after: after, ids: ids) { slot, _ in
                        let s = Int(slot)
                        if bits[s >> 6] & (1 &<< UInt64(s & 63)) != 0 {
                            slots.append(s)
                            if slots.count >= wanted { return false }
                        }
                        return true
                    }
                    if !finished { return }
                }
            }
        }
    }

    private func collectPage(_ plan: SearchPlan, matches: [UInt64], wanted: Int, into slots: inout [Int]) {
        let sort = plan.query.sort
        var candidates: [(group: UInt8, key: Int64, id: Int64, slot: Int)] = []
        BitOps.forEachSlot(matches) { slot in
            let p = position(of: slot, in: sort)
            if let cursor = plan.cursor {
                guard (p.group, p.key, p.id) > (cursor.group, cursor.key, cursor.id) else { return }
            }
            candidates.append((p.group, p.key, p.id, slot))
        }
        candidates.sort { ($0.group, $0.key, $0.id) < ($1.group, $1.key, $1.id) }
        slots.append(contentsOf: candidates.prefix(wanted).map(\.slot))
    }

    // MARK: Facets

    private func facetCounts(_ field: FacetField, over base: [UInt64]) -> [(value: FacetValue, count: Int)] {
        var entries: [(value: FacetValue, count: Int)] = []
        switch field {
        case .listingType:
            for type in ListingType.allCases {
                entries.append((.listingType(type), BitOps.intersectionCount(base, typePostings[Int(type.rawValue)].words)))
            }
        case .city:
            let counts = tally(base, codes: cityCodes, valueCount: cityDictionary.values.count)
            for (code, count) in counts.enumerated() { entries.append((.text(cityDictionary.values[code]), count)) }
        case .area:
            let counts = tally(base, codes: areaCodes, valueCount: areaDictionary.values.count)
            for (code, count) in counts.enumerated() { entries.append((.text(areaDictionary.values[code]), count)) }
        case .bedrooms:
            for (value, posting) in bedroomPostings {
                entries.append((.bedrooms(value), BitOps.intersectionCount(base, posting.words)))
            }
        case .priceBucket:
            let bounds = PriceBuckets.lowerBounds
            var counts = [Int](repeating: 0, count: bounds.count)
            BitOps.forEachSlot(base) { slot in
                guard !SlotFlags(rawValue: flags[slot]).isDisjoint(with: [.hasPriceFrom, .hasPriceTo]) else { return }
                let low = priceLow[slot]
                let high = priceHigh[slot]
                for i in 0..<bounds.count where high >= bounds[i] && (i + 1 == bounds.count || low < bounds[i + 1]) {
                    counts[i] += 1
                }
            }
            for (index, count) in counts.enumerated() { entries.append((.priceBucket(index), count)) }
        }
        return entries.filter { $0.count > 0 }.sorted { a, b in
            a.count != b.count ? a.count > b.count : FacetValue.ascending(a.value, b.value)
        }
    }

    private func tally(_ base: [UInt64], codes: [UInt32], valueCount: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: valueCount)
        codes.withUnsafeBufferPointer { codes in
            counts.withUnsafeMutableBufferPointer { counts in
                BitOps.forEachSlot(base) { counts[Int(codes[$0])] += 1 }
            }
        }
        return counts
    }
}

extension FacetValue {
    /// The tie-break order of facet values: text by its Unicode order, the others by their numeric value.
    static func ascending(_ a: FacetValue, _ b: FacetValue) -> Bool {
        switch (a, b) {
        case (.text(let x), .text(let y)): x < y
        case (.listingType(let x), .listingType(let y)): x.rawValue < y.rawValue
        case (.bedrooms(let x), .bedrooms(let y)): x < y
        case (.priceBucket(let x), .priceBucket(let y)): x < y
        default: false
        }
    }
}
