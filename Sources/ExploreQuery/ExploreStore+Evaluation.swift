/// Query evaluation a block at a time: filters, total and facets in one pass over the slots.
///
/// Every constrained field `F` is a bit vector `B_F` over slots. The match set is the AND of all of them; a
/// facet on `F` counts over the AND of all of them except `B_F` (faceted-search semantics). Instead of
/// materialising each `B_F` for a million slots, the slots are processed in blocks of 64 words (4,096 slots):
/// each field is evaluated for the block into a small buffer that stays in L1 cache, then the block's matches,
/// facet bases and facet counts are derived from those buffers. Blocks where a categorical filter has no rows
/// (postings keep a per-block summary) are skipped for every output that needs that filter, so a city filter
/// confines most work to that city's blocks (bulk loads cluster slots by city).
///
/// Outputs whose filters all fall on grouped fields (type, status, city, bedrooms, price) are counted from
/// the ``GroupCube`` instead, and when the cube's total shows matches are dense, the page is found by walking
/// the sort order and testing rows directly, so such searches never touch the bitmaps.
extension ExploreStore {
    /// Sorted walks testing rows directly may visit at most this many rows (estimated) per page.
    static let rowWalkLimit = 150

    func search(_ plan: SearchPlan) -> SearchResult {
        let query = plan.query
        let facetFields = FacetField.allCases.filter { query.facets.contains($0) }
        let used = query.filter.usedFields
        func grouped(excluding own: FilterField?) -> Bool {
            CubeFilter.canCount(used.filter { $0 != own })
        }
        let totalFromCube = grouped(excluding: nil)
        let cubeFacets = facetFields.filter { $0 != .area && grouped(excluding: $0.ownFilter) }
        let bitmapFacets = facetFields.filter { !cubeFacets.contains($0) }
        var cubeCounts: CubeCounts?
        if totalFromCube || !cubeFacets.isEmpty {
            cubeCounts = CubeCounts(
                cube: cube, filter: CubeFilter(query.filter, statusDictionary: statusDictionary,
                                               cityDictionary: cityDictionary),
                total: totalFromCube, facets: cubeFacets, statusDictionary: statusDictionary,
                cityDictionary: cityDictionary)
        }
        let wanted = plan.offset + query.limit + 1
        var walkRows = false
        if let matchCount = cubeCounts?.total {
            walkRows = matchCount == 0 || wanted * count <= matchCount * Self.rowWalkLimit
            // An ascending price walk under a price minimum needs the match set to start at the minimum.
            if query.sort == .priceAscending && query.filter.priceMin != nil && matchCount > 0 { walkRows = false }
        }
        var evaluation = BlockEvaluation(matches: nil, total: 0, counters: [])
        if !walkRows || !bitmapFacets.isEmpty {
            evaluation = evaluateBlocks(query.filter, wantMatches: !walkRows, facetFields: bitmapFacets)
        }
        let total = cubeCounts?.total ?? evaluation.total
        var paged = page(plan, matches: evaluation.matches, matchCount: total)
        if paged == nil {
            // The row walk gave up: evaluate the match set (facet counts already done are kept).
            let matches = evaluateBlocks(query.filter, wantMatches: true, facetFields: []).matches
            paged = page(plan, matches: matches, matchCount: total)
        }
        let (rows, nextCursor) = paged ?? ([], nil)
        var bitmapCounts: [FacetField: [(value: FacetValue, count: Int)]] = [:]
        for counter in evaluation.counters { bitmapCounts[counter.field] = counter.result() }
        let facets = facetFields.map { field in
            FacetCounts(field: field, counts: cubeCounts?.facets[field] ?? bitmapCounts[field] ?? [])
        }
        return SearchResult(total: query.includeTotal ? total : nil, rows: rows, columns: query.columns,
                            nextCursor: nextCursor, facets: facets)
    }

    struct BlockEvaluation {
        var matches: MatchSet?
        var total: Int
        var counters: [FacetCounter]
    }

    /// The bitmap evaluation: the match set (when `wantMatches`) and its size, and the counts of `facetFields`.
    func evaluateBlocks(_ filter: SearchFilter, wantMatches: Bool, facetFields: [FacetField]) -> BlockEvaluation {
        let words = wordCount
        let blockCount = (words + Bitset.blockWords - 1) / Bitset.blockWords
        let terms = filterTerms(filter, wordCount: words)

        // Which blocks each output needs: the AND of the block summaries of the terms it uses.
        let maskWords = (blockCount + 63) / 64
        func mask(excluding skipped: FilterField?) -> [UInt64] {
            var result = [UInt64](repeating: ~0, count: maskWords)
            for term in terms where term.field != skipped {
                guard let blocks = term.blocks else { continue }
                for i in 0..<maskWords { result[i] &= i < blocks.count ? blocks[i] : 0 }
            }
            return result
        }
        let matchMask = mask(excluding: nil)
        let facetPlans: [FacetPlan] = facetFields.map { field in
            let own = terms.contains { $0.field == field.ownFilter }
            return FacetPlan(field: field, usesOwnBase: own, mask: own ? mask(excluding: field.ownFilter) : matchMask,
                             skipIndex: terms.firstIndex { $0.field == field.ownFilter })
        }
        var counters = facetPlans.map { FacetCounter(field: $0.field, store: self) }
        let buckets = PriceBucketBitmaps(store: self)

        // Matches are kept only for the blocks that can hold any (a dense vector would cost a page-faulting
        // allocation of `slots / 8` bytes per query): `matchBlockOffsets[block]` is the block's word offset in
        // `matchWords`, or -1.
        var matchBlockOffsets = [Int32](repeating: -1, count: blockCount)
        var matchWords: [UInt64] = []
        var total = 0
        var fieldBuffers = [UInt64](repeating: 0, count: (terms.count + 3) * Bitset.blockWords)
        let rangeIndices = terms.indices.filter { terms[$0].present != nil }
        let plainIndices = terms.indices.filter { terms[$0].present == nil }
        let liveWords = live.words

        for block in 0..<blockCount {
            let bit = UInt64(1) << UInt64(block & 63)
            let needMatches = matchMask[block >> 6] & bit != 0
                && (wantMatches || facetPlans.contains { !$0.usesOwnBase })
            let needFacets = facetPlans.contains { $0.usesOwnBase && $0.mask[block >> 6] & bit != 0 }
            let needMatchFacets = needMatches && facetPlans.contains { !$0.usesOwnBase }
            guard needMatches || needFacets else { continue }
            let start = block * Bitset.blockWords
            let end = Swift.min(start + Bitset.blockWords, words)
            let n = end - start

            fieldBuffers.withUnsafeMutableBufferPointer { buffers in
                let width = Bitset.blockWords
                func buffer(_ index: Int) -> UnsafeMutableBufferPointer<UInt64> {
                    UnsafeMutableBufferPointer(rebasing: buffers[index * width..<(index + 1) * width])
                }
                // Scratch rows after the term buffers: need, base, block matches.
                let need = buffer(terms.count)
                let base = buffer(terms.count + 1)
                let blockMatches = buffer(terms.count + 2)
                /// `out = AND of the chosen terms` (live rows when none), term by term so the loops vectorise.
                func combine(_ chosen: [Int], skipping skipped: Int?, into out: UnsafeMutableBufferPointer<UInt64>) {
                    var first = true
                    for index in chosen where index != skipped {
                        let source = buffer(index)
                        if first {
                            for j in 0..<n { out[j] = source[j] }
                            first = false
                        } else {
                            for j in 0..<n { out[j] &= source[j] }
                        }
                    }
                    if first {
                        for j in 0..<n { out[j] = start + j < liveWords.count ? liveWords[start + j] : 0 }
                    }
                }

                for index in plainIndices {
                    terms[index].fill(block: block, start: start, end: end, into: buffer(index), need: nil)
                }
                // Range terms check rows against the column only where the outcome matters: rows that pass the
                // other (categorical) terms of at least one output using the range. Reading a row's value is a
                // likely cache miss, so this is where most of a query's time would otherwise go.
                for index in rangeIndices {
                    for j in 0..<n { need[j] = 0 }
                    func addOutput(skipping skipped: Int?) {
                        guard skipped != index else { return }
                        combine(plainIndices, skipping: skipped, into: base)
                        for j in 0..<n { need[j] |= base[j] }
                    }
                    if needMatches { addOutput(skipping: nil) }
                    for facet in facetPlans where facet.usesOwnBase && facet.mask[block >> 6] & bit != 0 {
                        addOutput(skipping: facet.skipIndex)
                    }
                    terms[index].fill(block: block, start: start, end: end, into: buffer(index),
                                      need: UnsafeBufferPointer(need))
                }
                let allTerms = Array(terms.indices)
                if needMatches {
                    combine(allTerms, skipping: nil, into: blockMatches)
                }
                if needMatches && wantMatches {
                    matchBlockOffsets[block] = Int32(matchWords.count)
                    var blockTotal = 0
                    for j in 0..<n { blockTotal &+= blockMatches[j].nonzeroBitCount }
                    matchWords.append(contentsOf: blockMatches[0..<n])
                    if n < width { matchWords.append(contentsOf: repeatElement(0, count: width - n)) }
                    total &+= blockTotal
                }
                for (planIndex, facet) in facetPlans.enumerated() where facet.mask[block >> 6] & bit != 0 {
                    if facet.usesOwnBase {
                        combine(allTerms, skipping: facet.skipIndex, into: base)
                        counters[planIndex].count(UnsafeBufferPointer(base), start: start, count: n, block: block, buckets: buckets)
                    } else if needMatchFacets {
                        counters[planIndex].count(UnsafeBufferPointer(blockMatches), start: start, count: n, block: block,
                                                  buckets: buckets)
                    }
                }
            }
        }

        return BlockEvaluation(matches: wantMatches ? MatchSet(blockOffsets: matchBlockOffsets, words: matchWords) : nil,
                               total: total, counters: counters)
    }

    /// The terms of a filter, one per constrained field.
    func filterTerms(_ filter: SearchFilter, wordCount words: Int) -> [FilterTerm] {
        var terms: [FilterTerm] = []
        if let types = filter.listingTypes {
            terms.append(FilterTerm(field: .listingType, postings: types.map { typePostings[Int($0.rawValue)] }))
        }
        if let statuses = filter.statuses {
            terms.append(FilterTerm(field: .status, postings: statuses.compactMap {
                statusDictionary.code(of: $0).map { statusPostings[Int($0)] }
            }))
        }
        if let cities = filter.cities {
            terms.append(FilterTerm(field: .city, postings: cities.compactMap {
                cityDictionary.code(of: $0).map { cityPostings[Int($0)] }
            }))
        }
        if let areas = filter.areas {
            terms.append(FilterTerm(field: .area, blockPostings: areaPostings,
                                    codes: areas.compactMap { areaDictionary.code(of: $0) }))
        }
        if let locations = filter.locationIDs {
            terms.append(FilterTerm(field: .locationID, slotLists: locations.compactMap { locationPostings[$0] }))
        }
        if filter.priceMin != nil || filter.priceMax != nil {
            var term = FilterTerm(field: .price, present: priceLowRanges.present.words)
            if let high = filter.priceMax, high < Int64.max {
                term.below = LessThan(priceLowRanges, high + 1, records: records, column: .priceLow, codes: priceLowCodes)
            }
            if let low = filter.priceMin { term.notBelow = LessThan(priceHighRanges, low, records: records, column: .priceHigh, codes: priceHighCodes) }
            terms.append(term)
        }
        if filter.bedroomsMin != nil || filter.bedroomsMax != nil {
            let low = filter.bedroomsMin ?? Int32.min
            let high = filter.bedroomsMax ?? Int32.max
            terms.append(FilterTerm(field: .bedrooms,
                                    postings: bedroomPostings.filter { $0.key >= low && $0.key <= high }.map(\.value)))
        }
        if let low = filter.bathroomsMin {
            terms.append(FilterTerm(field: .bathrooms, postings: bathroomPostings.filter { $0.key >= low }.map(\.value)))
        }
        if filter.createdAfter != nil || filter.createdBefore != nil {
            var term = FilterTerm(field: .createdAt, present: createdRanges.present.words)
            if let before = filter.createdBefore {
                term.below = LessThan(createdRanges, before, records: records, column: .createdAt)
            }
            if let after = filter.createdAfter {
                term.notBelow = LessThan(createdRanges, after, records: records, column: .createdAt)
            }
            terms.append(term)
        }
        return terms
    }
}

/// `value < x` over one range-bitmap index: a stored bitmap plus an exact check of the straddling bucket.
struct LessThan {
    let full: [UInt64]
    /// Candidates needing a per-row check: `upper & ~full`; empty when `x` is a bound.
    let upper: [UInt64]
    let exact: Bool
    let x: Int64
    let records: [SlotRecord]
    let column: RecordColumn
    /// The column's 16-bit codes (empty: none), which decide a candidate without reading `values` unless
    /// its code equals `codeBelow` (see ``ValueCodes/threshold(_:)``).
    let codes: [UInt16]
    let codeBelow: UInt16
    let codeExact: Bool

    init(_ index: RangeBitmaps, _ x: Int64, records: [SlotRecord], column: RecordColumn, codes: ValueCodes? = nil) {
        let b = index.bucket(x)
        full = b >= 1 ? index.less[b - 1].words : []
        exact = b >= 1 && index.bounds[b - 1] == x
        upper = exact ? [] : (b < index.bounds.count ? index.less[b].words : index.present.words)
        self.x = x
        self.records = records
        self.column = column
        self.codes = codes?.codes ?? []
        (codeBelow, codeExact) = codes?.threshold(x) ?? (0, false)
    }

    @inline(__always)
    func word(_ i: Int, need: UInt64) -> UInt64 {
        var word = i < full.count ? full[i] : 0
        guard !exact, i < upper.count else { return word }
        let candidates = upper[i] & ~word & need
        guard candidates != 0 else { return word }
        // Candidates whose slot has a code are decided by it (rows sharing `x`'s code still need their value,
        // unless `x` is that code's bound); the others, and those, are read from the records.
        let coded = codes.count &- (i &<< 6)
        let withCode = coded >= 64 ? candidates : coded > 0 ? candidates & ((1 &<< UInt64(coded)) &- 1) : 0
        var toRead = candidates & ~withCode
        if withCode != 0 {
            // Candidates are a few scattered rows of a large range, so each code read is likely a cache miss.
            // The loop never branches on a loaded code (comparisons become bit masks), so the processor overlaps
            // the misses of a whole word's candidates instead of waiting for each one.
            var less: UInt64 = 0
            var unsure: UInt64 = 0
            var pending = withCode
            codes.withUnsafeBufferPointer { codes in
                while pending != 0 {
                    let bit = UInt64(pending.trailingZeroBitCount)
                    pending &= pending &- 1
                    let code = codes[i &<< 6 | Int(bit)]
                    less |= UInt64(code < codeBelow ? 1 : 0) &<< bit
                    unsure |= UInt64(code == codeBelow ? 1 : 0) &<< bit
                }
            }
            word |= less
            if !codeExact { toRead |= unsure }
        }
        while toRead != 0 {
            let bit = toRead.trailingZeroBitCount
            toRead &= toRead &- 1
            if column.value(records[i &<< 6 | bit]) < x { word |= 1 &<< UInt64(bit) }
        }
        return word
    }
}

/// The record field a range index covers.
enum RecordColumn {
    case priceLow, priceHigh, createdAt

    @inline(__always)
    func value(_ record: SlotRecord) -> Int64 {
        switch self {
        case .priceLow: record.priceLow
        case .priceHigh: record.priceHigh
        case .createdAt: record.createdAt
        }
    }
}

/// One constrained field: an OR of postings, or a range (`present`, `< below`, `>= notBelow`).
struct FilterTerm {
    let field: FilterField
    var postings: [Bitset] = []
    var present: [UInt64]?
    var below: LessThan?
    var notBelow: LessThan?
    /// Block summary (nil: any block may match).
    let blocks: [UInt64]?

    init(field: FilterField, postings: [Bitset]) {
        self.field = field
        self.postings = postings
        var blocks: [UInt64] = []
        for posting in postings {
            if posting.blocks.count > blocks.count {
                blocks.append(contentsOf: repeatElement(0, count: posting.blocks.count - blocks.count))
            }
            for (i, word) in posting.blocks.enumerated() { blocks[i] |= word }
        }
        self.blocks = blocks
    }

    /// Sorted slot lists (location), filled per block by binary search.
    var slotLists: [SortedSlots] = []
    /// Block postings (area) and the asked values' codes, filled per block from the values' pages.
    var blockPostings: BlockPostings?
    var codes: [UInt32] = []

    init(field: FilterField, blockPostings: BlockPostings, codes: [UInt32]) {
        self.field = field
        self.blockPostings = blockPostings
        self.codes = codes
        var blocks: [UInt64] = []
        for code in codes where Int(code) < blockPostings.valueBlocks.count {
            let summary = blockPostings.valueBlocks[Int(code)]
            if summary.count > blocks.count { blocks.append(contentsOf: repeatElement(0, count: summary.count - blocks.count)) }
            for (i, word) in summary.enumerated() { blocks[i] |= word }
        }
        self.blocks = blocks
    }

    init(field: FilterField, slotLists: [SortedSlots]) {
        self.field = field
        self.slotLists = slotLists
        var blocks: [UInt64] = []
        for list in slotLists {
            if list.blocks.count > blocks.count {
                blocks.append(contentsOf: repeatElement(0, count: list.blocks.count - blocks.count))
            }
            for (i, word) in list.blocks.enumerated() { blocks[i] |= word }
        }
        self.blocks = blocks
    }

    init(field: FilterField, present: [UInt64]) {
        self.field = field
        self.present = present
        blocks = nil
    }

    /// Writes this term's words `start..<end` (block `block`) into `out`.
    @inline(__always)
    /// For range terms, bits outside `need` may be wrong (the caller does not use them).
    func fill(block: Int, start: Int, end: Int, into out: UnsafeMutableBufferPointer<UInt64>,
              need: UnsafeBufferPointer<UInt64>?) {
        let n = end - start
        if let present {
            for j in 0..<n {
                let i = start + j
                var word = i < present.count ? present[i] : 0
                let wanted = need.map { $0[j] } ?? UInt64.max
                if word & wanted != 0, let below { word &= below.word(i, need: word & wanted) }
                if word & wanted != 0, let notBelow { word &= ~notBelow.word(i, need: word & wanted) }
                out[j] = word
            }
            return
        }
        for j in 0..<n { out[j] = 0 }
        if let blockPostings {
            blockPostings.pages.withUnsafeBufferPointer { pages in
                for code in codes {
                    guard let page = blockPostings.page(block: block, code: code) else { continue }
                    let base = page * BlockPostings.pageWords
                    for j in blockPostings.span(ofPage: page, within: n) { out[j] |= pages[base + j] }
                }
            }
        }
        for list in slotLists {
            list.slots.withUnsafeBufferPointer { slots in
                let first = UInt32(start &<< 6)
                var low = 0
                var high = slots.count
                while low < high {
                    let mid = (low + high) / 2
                    if slots[mid] < first { low = mid + 1 } else { high = mid }
                }
                let limit = UInt32(end &<< 6)
                while low < slots.count && slots[low] < limit {
                    let slot = Int(slots[low])
                    out[(slot >> 6) - start] |= 1 &<< UInt64(slot & 63)
                    low += 1
                }
            }
        }
        let bit = UInt64(1) << UInt64(block & 63)
        for posting in postings where block >> 6 < posting.blocks.count && posting.blocks[block >> 6] & bit != 0 {
            posting.words.withUnsafeBufferPointer { words in
                // Through base pointers, so the loop has no bounds or overflow checks and is vectorized.
                guard let source = words.baseAddress, let target = out.baseAddress else { return }
                for j in 0..<Swift.max(0, Swift.min(end, words.count) - start) { target[j] |= source[start &+ j] }
            }
        }
    }
}

struct FacetPlan {
    let field: FacetField
    /// Whether the facet's own filter is used, so its base differs from the matches.
    let usesOwnBase: Bool
    let mask: [UInt64]
    let skipIndex: Int?
}

/// The stored bitmaps behind the price-bucket facet: bucket `i` is `low < bounds[i+1] && high >= bounds[i]`.
struct PriceBucketBitmaps {
    /// Per bucket: rows with `low < upper bound` (present rows for the last), rows with `high < lower bound`.
    let lowBelow: [[UInt64]]
    let highBelow: [[UInt64]]
    let available: Bool

    init(store: ExploreStore) {
        let bounds = PriceBuckets.lowerBounds
        var lows: [[UInt64]] = []
        var highs: [[UInt64]] = []
        var ok = true
        for i in bounds.indices {
            if let high = store.priceHighRanges.storedLess(than: bounds[i]) { highs.append(high) } else { ok = false }
            if i + 1 < bounds.count {
                if let low = store.priceLowRanges.storedLess(than: bounds[i + 1]) { lows.append(low) } else { ok = false }
            } else {
                lows.append(store.priceLowRanges.present.words)
            }
        }
        lowBelow = lows
        highBelow = highs
        available = ok
    }
}

/// Accumulates one facet's counts block by block, by postings or by reading the rows, whichever is cheaper.
struct FacetCounter {
    let field: FacetField
    let store: ExploreStore
    var counts: [Int]
    var bedroomCounts: [Int32: Int] = [:]
    // Copies of the store's arrays (references, no data copied) so the per-block loop does not go through
    // the class for every access.
    private let typePostings: [Bitset]
    private let cityPostings: [Bitset]
    private let bedroomPostings: [(value: Int32, posting: Bitset)]
    private let records: [SlotRecord]
    private let areaPostings: BlockPostings
    private let areaOfSlot: [UInt32]
    /// For the city facet: the city codes with rows in each block (`blockCityStart[b]..<blockCityStart[b+1]`
    /// in `blockCities`), so a block intersects only the few city postings clustered there.
    private let blockCityStart: [Int32]
    private let blockCities: [Int32]

    init(field: FacetField, store: ExploreStore) {
        self.field = field
        self.store = store
        typePostings = field == .listingType ? store.typePostings : []
        cityPostings = field == .city ? store.cityPostings : []
        bedroomPostings = field == .bedrooms ? store.bedroomPostings.map { ($0.key, $0.value) } : []
        records = store.records
        areaPostings = field == .area ? store.areaPostings : BlockPostings()
        areaOfSlot = field == .area ? store.areaOfSlot : []
        if field == .city {
            let blockCount = (store.wordCount + Bitset.blockWords - 1) / Bitset.blockWords
            var perBlock = [Int32](repeating: 0, count: blockCount + 1)
            for posting in store.cityPostings {
                for (index, summary) in posting.blocks.enumerated() {
                    var bits = summary
                    while bits != 0 {
                        let block = index &<< 6 | bits.trailingZeroBitCount
                        bits &= bits &- 1
                        if block < blockCount { perBlock[block + 1] += 1 }
                    }
                }
            }
            for b in 0..<blockCount { perBlock[b + 1] += perBlock[b] }
            var fill = perBlock
            var cities = [Int32](repeating: 0, count: Int(perBlock[blockCount]))
            for (code, posting) in store.cityPostings.enumerated() {
                for (index, summary) in posting.blocks.enumerated() {
                    var bits = summary
                    while bits != 0 {
                        let block = index &<< 6 | bits.trailingZeroBitCount
                        bits &= bits &- 1
                        if block < blockCount {
                            cities[Int(fill[block])] = Int32(code)
                            fill[block] += 1
                        }
                    }
                }
            }
            blockCityStart = perBlock
            blockCities = cities
        } else {
            blockCityStart = []
            blockCities = []
        }
        switch field {
        case .listingType: counts = [Int](repeating: 0, count: ListingType.allCases.count)
        case .city: counts = [Int](repeating: 0, count: store.cityDictionary.values.count)
        case .area: counts = [Int](repeating: 0, count: store.areaDictionary.values.count)
        case .bedrooms: counts = []
        case .priceBucket: counts = [Int](repeating: 0, count: PriceBuckets.lowerBounds.count)
        }
    }

    mutating func count(_ base: UnsafeBufferPointer<UInt64>, start: Int, count n: Int, block: Int, buckets: PriceBucketBitmaps) {
        var rows = 0
        for j in 0..<n { rows &+= base[j].nonzeroBitCount }
        guard rows > 0 else { return }
        let bit = UInt64(1) << UInt64(block & 63)
        // Reading a row costs a few nanoseconds; a posting costs `n` word operations.
        let perRowCheaper = rows * 8 < n
        switch field {
        case .listingType:
            for (index, posting) in typePostings.enumerated() {
                counts[index] += Self.intersect(base, posting.words, start: start, count: n)
            }
        case .city:
            let first = Int(blockCityStart[block])
            let last = Int(blockCityStart[block + 1])
            if perRowCheaper || (last - first) * n > rows * 4 {
                tally(base, start: start, count: n, column: records) { $0.city }
            } else {
                for entry in first..<last {
                    let code = Int(blockCities[entry])
                    counts[code] += Self.intersect(base, cityPostings[code].words, start: start, count: n)
                }
            }
        case .area:
            // One popcount pass over the words each area page of the block spans, unless so few rows match
            // that reading their codes is cheaper.
            let entries = block < areaPostings.blockEntries.count ? areaPostings.blockEntries[block] : []
            var pageWords = 0
            for entry in entries { pageWords += areaPostings.span(ofPage: Int(entry.page), within: n).count }
            if perRowCheaper || pageWords > rows * 4 {
                tally(base, start: start, count: n, column: areaOfSlot) { $0 }
            } else {
                areaPostings.pages.withUnsafeBufferPointer { pages in
                    for entry in entries {
                        let page = Int(entry.page)
                        let offset = page * BlockPostings.pageWords
                        var c = 0
                        for j in areaPostings.span(ofPage: page, within: n) {
                            c &+= (base[j] & pages[offset + j]).nonzeroBitCount
                        }
                        counts[Int(entry.code)] += c
                    }
                }
            }
        case .bedrooms:
            if perRowCheaper {
                Self.forEachSlot(base, start: start, count: n) { slot in
                    let record = records[slot]
                    if SlotFlags(rawValue: record.flags).contains(.hasBedrooms) {
                        bedroomCounts[record.bedrooms, default: 0] += 1
                    }
                }
            } else {
                for (value, posting) in bedroomPostings
                where block >> 6 < posting.blocks.count && posting.blocks[block >> 6] & bit != 0 {
                    let c = Self.intersect(base, posting.words, start: start, count: n)
                    if c > 0 { bedroomCounts[value, default: 0] += c }
                }
            }
        case .priceBucket:
            if perRowCheaper || !buckets.available {
                let bounds = PriceBuckets.lowerBounds
                Self.forEachSlot(base, start: start, count: n) { slot in
                    let record = records[slot]
                    guard SlotFlags(rawValue: record.flags).hasPrice else { return }
                    let low = record.priceLow
                    let high = record.priceHigh
                    for i in 0..<bounds.count where high >= bounds[i] && (i + 1 == bounds.count || low < bounds[i + 1]) {
                        counts[i] += 1
                    }
                }
            } else {
                for i in 0..<buckets.lowBelow.count {
                    let low = buckets.lowBelow[i]
                    let high = buckets.highBelow[i]
                    var c = 0
                    for j in 0..<n {
                        let w = start + j
                        c &+= (base[j] & (w < low.count ? low[w] : 0) & ~(w < high.count ? high[w] : 0)).nonzeroBitCount
                    }
                    counts[i] += c
                }
            }
        }
    }

    @inline(__always)
    private static func intersect(_ base: UnsafeBufferPointer<UInt64>, _ words: [UInt64], start: Int, count n: Int) -> Int {
        let limit = Swift.min(n, words.count - start)
        guard limit > 0 else { return 0 }
        var c = 0
        for j in 0..<limit { c &+= (base[j] & words[start + j]).nonzeroBitCount }
        return c
    }

    @inline(__always)
    private static func forEachSlot(_ base: UnsafeBufferPointer<UInt64>, start: Int, count n: Int, _ body: (Int) -> Void) {
        for j in 0..<n {
            var word = base[j]
            while word != 0 {
                body((start + j) &<< 6 | word.trailingZeroBitCount)
                word &= word &- 1
            }
        }
    }

    /// Counts the rows of `base` by the code `column` holds for each slot.
    private mutating func tally<Value>(_ base: UnsafeBufferPointer<UInt64>, start: Int, count n: Int,
                                       column: [Value], _ code: (Value) -> UInt32) {
        var local = counts
        counts = []
        column.withUnsafeBufferPointer { column in
            Self.forEachSlot(base, start: start, count: n) { local[Int(code(column[$0]))] += 1 }
        }
        counts = local
    }

    func result() -> [(value: FacetValue, count: Int)] {
        var entries: [(value: FacetValue, count: Int)] = []
        switch field {
        // Zero counts are skipped here rather than by `ordered`: a city's search counts a few dozen of the
        // thousands of areas, and building a value for every one of them retained every area name.
        case .listingType:
            for (index, count) in counts.enumerated() where count > 0 {
                entries.append((.listingType(ListingType(rawValue: UInt8(index)) ?? .existing), count))
            }
        case .city:
            return store.cityDictionary.facetEntries(counts)
        case .area:
            return store.areaDictionary.facetEntries(counts)
        case .bedrooms:
            for (value, count) in bedroomCounts where count > 0 { entries.append((.bedrooms(value), count)) }
        case .priceBucket:
            for (index, count) in counts.enumerated() where count > 0 { entries.append((.priceBucket(index), count)) }
        }
        return Self.ordered(entries)
    }

    /// Non-zero counts, most frequent first, ties by value: the order every facet is returned in.
    static func ordered(_ entries: [(value: FacetValue, count: Int)]) -> [(value: FacetValue, count: Int)] {
        entries.filter { $0.count > 0 }.sorted { a, b in
            a.count != b.count ? a.count > b.count : FacetValue.ascending(a.value, b.value)
        }
    }
}

/// The matching slots of one query, stored only for blocks that were evaluated.
struct MatchSet {
    let blockOffsets: [Int32]
    let words: [UInt64]

    @inline(__always)
    func contains(_ slot: Int) -> Bool {
        let block = slot >> (6 + Bitset.blockShift)
        guard block < blockOffsets.count else { return false }
        let offset = Int(blockOffsets[block])
        guard offset >= 0 else { return false }
        return words[offset + ((slot >> 6) & (Bitset.blockWords - 1))] & (1 &<< UInt64(slot & 63)) != 0
    }
}
