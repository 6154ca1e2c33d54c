/// Sorted paging: walk the sort order testing the match bitmap per row, or, when matches are so rare that
/// the walk would be long, collect and sort the matches instead.
extension ExploreStore {
    // MARK: Paging

    /// The position of `slot` in `sort`: group, the list's key and the id.
    func position(of slot: Int, in sort: SortOrder) -> (group: UInt8, key: Int64, id: Int64) {
        let record = records[slot]
        let priced = SlotFlags(rawValue: record.flags).hasPrice
        switch sort {
        case .priceAscending: return priced ? (0, record.priceLow, record.id) : (1, 0, record.id)
        case .priceDescending: return priced ? (0, ~record.priceLow, record.id) : (1, 0, record.id)
        case .newest: return (0, ~record.createdAt, record.id)
        case .oldest: return (0, record.createdAt, record.id)
        }
    }

    /// - Parameter matches: the match set, or nil to test rows against the filter during the walk.
    /// - Returns: nil when a walk without a match set gave up (it visited far more rows than estimated, as
    ///   when the sort key and the filter are correlated); the caller then evaluates the match set.
    func page(_ plan: SearchPlan, matches: MatchSet?, matchCount: Int) -> ([ExploreListing], SearchCursor?)? {
        let query = plan.query
        let wanted = plan.offset + query.limit + 1
        guard matchCount > 0 else { return ([], nil) }
        // A walk visits about `wanted × live / matches` entries (a chunk read, a call and a bit test each);
        // collecting reads every match's sort key from the columns (a likely cache miss each) and selects.
        // Profiles put a collected match at about four walk steps.
        let walkCost = Double(wanted) * Double(count) / Double(matchCount)
        let collectCost = Double(matchCount) * 4
        var slots: [Int] = []
        slots.reserveCapacity(Swift.min(wanted, matchCount))
        if let matches, walkCost > collectCost {
            collectPage(plan, matches: matches, wanted: wanted, into: &slots)
        } else if let matches {
            var exactPriceStart = false
            if query.sort == .priceAscending, let minimum = query.filter.priceMin, minimum > Int64.min,
               plan.cursor.map({ $0.group == 0 && $0.key < minimum }) ?? true {
                // Rows priced from below the minimum match only through a range reaching it; they are found in
                // the match set (few: only ranged rows), so the walk can start at the minimum instead of
                // `minimum - maxPriceSpread`, which one wide development range would push to the start.
                collectStraddlers(plan, matches: matches, below: minimum, wanted: wanted, into: &slots)
                exactPriceStart = true
            }
            // The estimate assumes matches spread evenly over the sort order; when they cluster at its far
            // end (a price-sorted search for a cheap city's developments), the walk runs far longer. It stops
            // once it has cost twice its estimate (a walk of evenly spread matches almost never does: the
            // steps to its `wanted` matches vary by about `1 / sqrt(wanted)`), then collects, so such a page
            // costs at most three times collecting, and much less when the estimate was far below that.
            let budget = Int(walkCost * 2) + wanted
            if slots.count < wanted,
               !walkPage(plan, wanted: wanted, budget: budget, into: &slots,
                         exactPriceStart: exactPriceStart, matching: { matches.contains($0) }) {
                slots.removeAll(keepingCapacity: true)
                collectPage(plan, matches: matches, wanted: wanted, into: &slots)
            }
        } else {
            let predicate = RowPredicate(plan.query.filter, store: self)
            let budget = Swift.max(Self.rowWalkBudget, Int(walkCost) * 8)
            guard walkPage(plan, wanted: wanted, budget: budget, into: &slots, matching: { predicate.matches($0) }) else {
                return nil
            }
        }
        let pageSlots = slots.dropFirst(plan.offset).prefix(query.limit)
        let rows = self.rows(slots: Array(pageSlots))
        var next: SearchCursor?
        if slots.count > plan.offset + query.limit, let last = pageSlots.last {
            let position = position(of: last, in: query.sort)
            next = CursorPosition(sort: query.sort, group: position.group, key: position.key, id: position.id,
                                  fingerprint: plan.fingerprint).encoded()
        }
        return (rows, next)
    }

    /// The fewest rows a walk without a match set may visit before giving up.
    static let rowWalkBudget = 2_000

    /// Matches priced from below `minimum`, after the cursor, in `(priceLow, id)` order: the page's first rows
    /// under a price minimum, selected like any collected page so most of them are rejected by their codes.
    private func collectStraddlers(_ plan: SearchPlan, matches: MatchSet, below minimum: Int64, wanted: Int,
                                   into slots: inout [Int]) {
        let below = LessThan(priceLowRanges, minimum, records: records, column: .priceLow, codes: priceLowCodes)
        collectPage(plan, matches: matches, wanted: wanted, into: &slots) { index, word in
            below.word(index, need: word) & word
        }
    }

    /// Walks the sort order from the cursor, appending matches until `wanted` are found or the order ends.
    /// - Returns: false when the walk visited `budget` entries first (`slots` then holds a partial page).
    private func walkPage(_ plan: SearchPlan, wanted: Int, budget: Int, into slots: inout [Int],
                          exactPriceStart: Bool = false, matching: (Int) -> Bool) -> Bool {
        let cursor = plan.cursor
        var remaining = budget
        // The counter is reached through a pointer: a captured `var` would be checked for exclusive access
        // at run time on every step, which tripled the cost of a step.
        return withUnsafeMutablePointer(to: &remaining) { remaining in
            func visit(_ slot: UInt32) -> Bool {
                let s = Int(slot)
                remaining.pointee &-= 1
                if remaining.pointee < 0 { return false }
                if matching(s) {
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
                if exactPriceStart, let minimum = filter.priceMin, start.map({ $0.key < minimum }) ?? true {
                    start = (minimum - 1, Int64.max)
                } else if inFirstGroup, let minimum = filter.priceMin {
                    let (floor, overflow) = minimum.subtractingReportingOverflow(maxPriceSpread)
                    if !overflow, floor > Int64.min, start.map({ $0.key < floor }) ?? true {
                        start = (floor - 1, Int64.max)
                    }
                }
                if inFirstGroup, !priceOrder.walkAscending(after: start, visit) { return remaining.pointee >= 0 }
                _ = unpriced.walkAscending(after: inFirstGroup ? nil : after, visit)
            case .priceDescending:
                var start = after.map { (key: ~$0.key, id: $0.id) }
                if inFirstGroup, let maximum = filter.priceMax, start.map({ $0.key > maximum }) ?? true {
                    start = (maximum, Int64.max)
                    // Rows priced exactly `maximum` come first; `(maximum, Int64.max)` would skip them.
                    if !priceOrder.walkDescending(group: maximum, visit) { return remaining.pointee >= 0 }
                }
                if inFirstGroup, !priceOrder.walkDescending(after: start, visit) { return remaining.pointee >= 0 }
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
            return remaining.pointee >= 0
        }
    }

    /// Selects the first `wanted` matches after the cursor in sort order; `restrict` narrows each match word
    /// (its word index, its bits) further.
    private func collectPage(_ plan: SearchPlan, matches: MatchSet, wanted: Int, into slots: inout [Int],
                             restrict: (Int, UInt64) -> UInt64 = { $1 }) {
        let sort = plan.query.sort
        var selection = PageSelection(store: self, sort: sort, wanted: wanted, cursor: plan.cursor)
        let codes = selection.codes
        let codeArray = codes.codes
        let ascending = selection.ascending
        let isPrice = selection.isPrice
        let priced = priceLowRanges.present.words
        // Matches before the cursor are dropped the same way as those past the heap's worst key: a code before
        // the cursor key's code is before it.
        let cursor = plan.cursor
        let cursorCode = cursor.map { codes.code(ascending ? $0.key : ~$0.key) } ?? 0
        // A plain loop rather than a closure called per match: it would capture the selection as a boxed
        // variable, checked for exclusive access on every match.
        for (block, offset) in matches.blockOffsets.enumerated() where offset >= 0 {
            for j in 0..<Bitset.blockWords {
                var word = matches.words[Int(offset) + j]
                guard word != 0 else { continue }
                let index = block &* Bitset.blockWords &+ j
                // Non-escaping, so calling it retains nothing (an optional closure is escaping and was retained
                // for every match word).
                word = restrict(index, word)
                guard word != 0 else { continue }
                // Group 0 (priced, or every row of the creation orders) is what codes can decide.
                let groupZero = isPrice ? (index < priced.count ? priced[index] : 0) : ~0
                let heapBound = selection.heap.isFull && selection.topGroup == 0
                // Once the heap's worst entry is in group 0, group 1 cannot enter; a cursor in group 1 is
                // after every group-0 row.
                if heapBound {
                    word &= groupZero
                    if !selection.prune.isEmpty {
                        let below = index < selection.prune.count ? selection.prune[index] : 0
                        word &= ascending ? below : ~below
                    }
                }
                if let cursor, cursor.group == 1 { word &= ~groupZero }
                let cursorBound = cursor?.group == 0
                if (heapBound || cursorBound) && index &<< 6 + 63 < codeArray.count {
                    let topCode = selection.topCode
                    var bits = word & groupZero
                    while bits != 0 {
                        let bit = bits.trailingZeroBitCount
                        bits &= bits &- 1
                        let code = codeArray[index &<< 6 | bit]
                        let worseThanTop = heapBound && (ascending ? code > topCode : code < topCode)
                        let beforeCursor = cursorBound && (ascending ? code < cursorCode : code > cursorCode)
                        if worseThanTop || beforeCursor { word &= ~(1 &<< UInt64(bit)) }
                    }
                }
                while word != 0 {
                    selection.add(index &<< 6 | word.trailingZeroBitCount)
                    word &= word &- 1
                }
            }
        }
        selection.flush()
        slots.append(contentsOf: selection.heap.sorted().map(\.slot))
    }
}

/// The heap of one collected page and the thresholds derived from its worst kept entry.
///
/// Rows that pass the code checks are read in small batches rather than one at a time: a row's record is
/// a cache miss, and reading a batch's records in one loop (independent loads) overlaps their misses, where
/// offering each row as it is found made every read wait for the previous one's heap update. The
/// thresholds lag by at most one batch, which only lets a few more rows be read.
private struct PageSelection {
    let store: ExploreStore
    let sort: SortOrder
    let cursor: CursorPosition?
    let codes: ValueCodes
    let ranges: RangeBitmaps
    let isPrice: Bool
    let ascending: Bool
    var heap: BoundedHeap
    /// The group and sort-key code of the heap's worst entry, once full.
    var topGroup: UInt8 = 0
    var topCode: UInt16 = 0
    /// Coarser and cheaper than codes: once the heap is full, a whole range-bitmap bucket past the worst kept
    /// key cannot enter, so one AND per match word drops its rows before any code is read. The bucket
    /// boundary's stored bitmap (empty: none yet), kept for ascending orders, removed for descending ones.
    var prune: [UInt64] = []
    /// The worst entry's group and key the thresholds were derived from.
    private var thresholdsOf: (group: UInt8, key: Int64)?
    private var pending: [Int] = []
    private var positions: [(group: UInt8, key: Int64, id: Int64)] = []

    static let batch = 16

    init(store: ExploreStore, sort: SortOrder, wanted: Int, cursor: CursorPosition?) {
        self.store = store
        self.sort = sort
        self.cursor = cursor
        isPrice = sort == .priceAscending || sort == .priceDescending
        codes = isPrice ? store.priceLowCodes : store.createdCodes
        ranges = isPrice ? store.priceLowRanges : store.createdRanges
        ascending = sort == .priceAscending || sort == .oldest
        heap = BoundedHeap(capacity: wanted)
        pending.reserveCapacity(Self.batch)
        positions.reserveCapacity(Self.batch)
    }

    @inline(__always)
    mutating func add(_ slot: Int) {
        pending.append(slot)
        if pending.count == Self.batch { flush() }
    }

    mutating func flush() {
        guard !pending.isEmpty else { return }
        positions.removeAll(keepingCapacity: true)
        for slot in pending { positions.append(store.position(of: slot, in: sort)) }
        for (slot, p) in zip(pending, positions) {
            if let cursor {
                guard (p.group, p.key, p.id) > (cursor.group, cursor.key, cursor.id) else { continue }
            }
            heap.offer((group: p.group, key: p.key, id: p.id, slot: slot))
        }
        pending.removeAll(keepingCapacity: true)
        guard heap.isFull, thresholdsOf.map({ $0 != (heap.top.group, heap.top.key) }) ?? true else { return }
        let top = heap.top
        thresholdsOf = (top.group, top.key)
        topGroup = top.group
        // Keys of descending orders are complemented (see `position(of:in:)`).
        let value = ascending ? top.key : ~top.key
        topCode = codes.code(value)
        // Ascending keeps rows below the first bound past `value`; descending drops rows below the last bound
        // at or under it. Only group 0 is in the bitmaps, and only it can still enter.
        let b = ranges.bucket(value)
        if top.group != 0 {
            prune = []
        } else if ascending {
            prune = b < ranges.bounds.count ? ranges.less[b].words : []
        } else {
            prune = b > 0 ? ranges.less[b - 1].words : []
        }
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
