/// Sorted paging: walk the sort order testing the match bitmap per row, or, when matches are so rare that
/// the walk would be long, collect and sort the matches instead.
extension ExploreStore {
    // MARK: Paging

    /// The position of `slot` in `sort`: group, the list's key and the id.
    private func position(of slot: Int, in sort: SortOrder) -> (group: UInt8, key: Int64, id: Int64) {
        let priced = SlotFlags(rawValue: flags[slot]).hasPrice
        switch sort {
        case .priceAscending: return priced ? (0, priceLow[slot], ids[slot]) : (1, 0, ids[slot])
        case .priceDescending: return priced ? (0, ~priceLow[slot], ids[slot]) : (1, 0, ids[slot])
        case .newest: return (0, ~createdAt[slot], ids[slot])
        case .oldest: return (0, createdAt[slot], ids[slot])
        }
    }

    func page(_ plan: SearchPlan, matches: MatchSet, matchCount: Int) -> ([ExploreListing], SearchCursor?) {
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

    private func walkPage(_ plan: SearchPlan, matches: MatchSet, wanted: Int, into slots: inout [Int]) {
        let cursor = plan.cursor
        do {
            let visit: (UInt32) -> Bool = { slot in
                let s = Int(slot)
                if matches.contains(s) {
                    slots.append(s)
                    if slots.count >= wanted { return false }
                }
                return true
            }
            // Cursor keys are kept in ascending form (descending orders store the complement). Without a cursor
            // (or with one before it), the walk starts where the filter's bound on the sort key allows matches.
            let filter = plan.query.filter
            let inFirstGroup = cursor == nil || cursor?.group == 0
            let after = cursor.map { (key: $0.key, id: $0.id) }
            switch plan.query.sort {
            case .priceAscending:
                var start = after
                if inFirstGroup, let minimum = filter.priceMin {
                    let (floor, overflow) = minimum.subtractingReportingOverflow(maxPriceSpread)
                    if !overflow, floor > Int64.min, start.map({ $0.key < floor }) ?? true {
                        start = (floor - 1, Int64.max)
                    }
                }
                if inFirstGroup, !priceOrder.walkAscending(after: start, visit) { return }
                _ = unpriced.walkAscending(after: inFirstGroup ? nil : after, visit)
            case .priceDescending:
                var start = after.map { (key: ~$0.key, id: $0.id) }
                if inFirstGroup, let maximum = filter.priceMax, start.map({ $0.key > maximum }) ?? true {
                    start = (maximum, Int64.max)
                    // Rows priced exactly `maximum` come first; `(maximum, Int64.max)` would skip them.
                    if !priceOrder.walkDescending(group: maximum, visit) { return }
                }
                if inFirstGroup, !priceOrder.walkDescending(after: start, visit) { return }
                _ = unpriced.walkAscending(after: inFirstGroup ? nil : after, visit)
            case .oldest:
                var start = after
                if let from = filter.createdAfter, from > Int64.min, start.map({ $0.key < from }) ?? true {
                    start = (from - 1, Int64.max)
                }
                _ = createdOrder.walkAscending(after: start, visit)
            case .newest:
                var start = after.map { (key: ~$0.key, id: $0.id) }
                if let before = filter.createdBefore, start.map({ $0.key >= before }) ?? true {
                    start = (before, Int64.max)
                }
                _ = createdOrder.walkDescending(after: start, visit)
            }
        }
    }

    private func collectPage(_ plan: SearchPlan, matches: MatchSet, wanted: Int, into slots: inout [Int]) {
        let sort = plan.query.sort
        var candidates: [(group: UInt8, key: Int64, id: Int64, slot: Int)] = []
        matches.forEachSlot { slot in
            let p = position(of: slot, in: sort)
            if let cursor = plan.cursor {
                guard (p.group, p.key, p.id) > (cursor.group, cursor.key, cursor.id) else { return }
            }
            candidates.append((p.group, p.key, p.id, slot))
        }
        candidates.sort { ($0.group, $0.key, $0.id) < ($1.group, $1.key, $1.id) }
        slots.append(contentsOf: candidates.prefix(wanted).map(\.slot))
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
