/// Live rows counted per group of (listing type, status, city, bedrooms) with each group's price-bucket
/// histogram, and the price ends of each coarser price group (the same key without status) in rank structures.
///
/// Explore's broad searches and most facets constrain only these fields (plus a price range), yet count over
/// the whole data set: the city facet of a city search drops the city filter, a search with only a type
/// filter counts every city. Answering those from the groups costs a pass over a few hundred groups (and two
/// rank queries per price group under a price filter) instead of a pass over a million rows. Price groups
/// leave status out because explore searches rarely filter on status and never together with a price, and
/// every rank query is a few cache misses: a search with both is answered from the bitmaps instead. A row is
/// counted by its group's key, which the caller knows from the row's record before and after a change: a
/// change that leaves the grouped fields and the price alone costs nothing here, and no per-slot map of groups
/// (4 bytes a slot, and a cache miss per change) is kept.
struct GroupCube {
    struct Key: Hashable {
        var type: UInt8
        var status: UInt32
        var city: UInt32
        /// `Int32.min` when the row has no bedrooms (bedrooms are never negative in the read model, but the
        /// marker only needs to be distinct from every real value, which `hasBedrooms` guarantees).
        var bedrooms: Int32
        var hasBedrooms: Bool
    }

    // Groups are stored column-wise so a search scanning keys and counts touches no rank structures (and
    // copies no arrays) for groups it does not need.
    private(set) var keys: [Key] = []
    /// Live rows per group.
    private(set) var counts: [Int32] = []
    /// The price group of each group.
    private(set) var priceGroupOf: [Int32] = []
    /// Per price group: its key (status 0), and `priceLow` and `priceHigh` of its priced rows.
    private(set) var priceKeys: [Key] = []
    /// Rows priced at one point (`low == high`, every existing property) keep one key; ranged rows (developments)
    /// keep both ends. A point price edit is then one rank-structure move instead of two.
    private(set) var points: [RankedKeys] = []
    private(set) var lows: [RankedKeys] = []
    private(set) var highs: [RankedKeys] = []
    private var priceGroupByKey: [Key: Int32] = [:]
    /// Priced rows per group and ``PriceBuckets`` bucket their range overlaps, `bucketCount` per group.
    private(set) var buckets: [Int32] = []
    static let bucketCount = PriceBuckets.lowerBounds.count
    private var cellByKey: [Key: Int32] = [:]

    init() {}

    var memoryBytes: Int {
        var total = (cellByKey.capacity + priceGroupByKey.capacity) * 24
        total += (keys.capacity + priceKeys.capacity) * MemoryLayout<Key>.stride + priceGroupOf.capacity * 4
        total += counts.capacity * 4 + buckets.capacity * 4 + (points.capacity + lows.capacity + highs.capacity) * MemoryLayout<RankedKeys>.stride
        for c in lows.indices { total += points[c].memoryBytes + lows[c].memoryBytes + highs[c].memoryBytes }
        return total
    }

    /// The group index of `key`, if the group exists.
    func index(of key: Key) -> Int? { cellByKey[key].map(Int.init) }

    private mutating func cell(for key: Key) -> Int {
        if let index = cellByKey[key] { return Int(index) }
        keys.append(key)
        counts.append(0)
        buckets.append(contentsOf: repeatElement(0, count: Self.bucketCount))
        var priceKey = key
        priceKey.status = 0
        if let group = priceGroupByKey[priceKey] {
            priceGroupOf.append(group)
        } else {
            priceGroupByKey[priceKey] = Int32(priceKeys.count)
            priceGroupOf.append(Int32(priceKeys.count))
            priceKeys.append(priceKey)
            points.append(RankedKeys())
            lows.append(RankedKeys())
            highs.append(RankedKeys())
        }
        cellByKey[key] = Int32(keys.count - 1)
        return keys.count - 1
    }

    /// Counts a row of `key`'s group.
    mutating func add(key: Key, price: (low: Int64, high: Int64)?) {
        let c = cell(for: key)
        counts[c] += 1
        if let price { addPrice(c, price, delta: 1) }
    }

    /// Stops counting a row of `key`'s group; `price` must be the price it was added with.
    mutating func remove(key: Key, price: (low: Int64, high: Int64)?) {
        guard let c = index(of: key) else { preconditionFailure("a row removed from a group that has none") }
        counts[c] -= 1
        if let price { addPrice(c, price, delta: -1) }
    }

    /// Moves the price of a row that stays in `key`'s group: in-place where the rank structures allow.
    mutating func movePrice(key: Key, from old: (low: Int64, high: Int64), to new: (low: Int64, high: Int64)) {
        guard let c = index(of: key) else { preconditionFailure("a price moved in a group that has none") }
        let p = Int(priceGroupOf[c])
        switch (old.low == old.high, new.low == new.high) {
        case (true, true):
            points[p].replace(old.low, with: new.low)
        case (false, false):
            if old.low != new.low { lows[p].replace(old.low, with: new.low) }
            if old.high != new.high { highs[p].replace(old.high, with: new.high) }
        default:
            rank(p, old, delta: -1)
            rank(p, new, delta: 1)
        }
        countBuckets(c, old, delta: -1)
        countBuckets(c, new, delta: 1)
    }

    private mutating func addPrice(_ c: Int, _ price: (low: Int64, high: Int64), delta: Int32) {
        rank(Int(priceGroupOf[c]), price, delta: delta)
        countBuckets(c, price, delta: delta)
    }

    private mutating func rank(_ p: Int, _ price: (low: Int64, high: Int64), delta: Int32) {
        if price.low == price.high {
            if delta > 0 { points[p].insert(price.low) } else { points[p].remove(price.low) }
        } else if delta > 0 {
            lows[p].insert(price.low)
            highs[p].insert(price.high)
        } else {
            lows[p].remove(price.low)
            highs[p].remove(price.high)
        }
    }

    /// Priced rows of price group `p`.
    func pricedCount(_ p: Int) -> Int { points[p].count + lows[p].count }

    @inline(__always)
    private mutating func countBuckets(_ c: Int, _ price: (low: Int64, high: Int64), delta: Int32) {
        for i in 0..<Self.bucketCount where Self.overlaps(price, bucket: i) { buckets[c * Self.bucketCount + i] += delta }
    }

    /// Whether `[low, high]` overlaps price bucket `i`, as the facet counts it.
    @inline(__always)
    static func overlaps(_ price: (low: Int64, high: Int64), bucket i: Int) -> Bool {
        let bounds = PriceBuckets.lowerBounds
        return price.high >= bounds[i] && (i + 1 == bounds.count || price.low < bounds[i + 1])
    }

    /// Builds the cube in one pass (bulk load) over slots `0..<slotCount` (a slot without a key has no row):
    /// rows grouped first, rank structures built from sorted keys.
    init(slotCount: Int, key: (Int) -> Key?, price: (Int) -> (low: Int64, high: Int64)?) {
        var pointKeys: [[Int64]] = []
        var lowKeys: [[Int64]] = []
        var highKeys: [[Int64]] = []
        for slot in 0..<slotCount {
            guard let k = key(slot) else { continue }
            let c = cell(for: k)
            while lowKeys.count < priceKeys.count {
                pointKeys.append([])
                lowKeys.append([])
                highKeys.append([])
            }
            counts[c] += 1
            if let range = price(slot) {
                let p = Int(priceGroupOf[c])
                if range.low == range.high {
                    pointKeys[p].append(range.low)
                } else {
                    lowKeys[p].append(range.low)
                    highKeys[p].append(range.high)
                }
                countBuckets(c, range, delta: 1)
            }
        }
        for c in priceKeys.indices {
            pointKeys[c].sort()
            lowKeys[c].sort()
            highKeys[c].sort()
            points[c] = RankedKeys(sorted: pointKeys[c])
            lows[c] = RankedKeys(sorted: lowKeys[c])
            highs[c] = RankedKeys(sorted: highKeys[c])
        }
    }
}

/// One search's view of the cube: which groups pass each grouped filter.
struct CubeFilter {
    /// Bit per listing type raw value; all ones when unconstrained.
    let typeMask: UInt64
    /// Allowed status codes (nil: any).
    let statuses: [Bool]?
    /// Allowed city codes (nil: any).
    let cities: [Bool]?
    let bedrooms: ClosedRange<Int32>?
    let priceMin: Int64?
    let priceMax: Int64?

    /// Filter fields a cube answer can honour.
    static let groupedFields: Set<FilterField> = [.listingType, .status, .city, .bedrooms, .price]

    /// Whether the cube can count under `fields` (a price range and a status together it cannot: price
    /// groups leave status out).
    static func canCount(_ fields: Set<FilterField>) -> Bool {
        fields.isSubset(of: groupedFields) && !(fields.contains(.price) && fields.contains(.status))
    }

    init(_ filter: SearchFilter, statusDictionary: StringDictionary, cityDictionary: StringDictionary) {
        if let types = filter.listingTypes {
            typeMask = types.reduce(0) { $0 | (1 &<< UInt64($1.rawValue)) }
        } else {
            typeMask = ~0
        }
        statuses = filter.statuses.map { Self.allowed($0, statusDictionary) }
        cities = filter.cities.map { Self.allowed($0, cityDictionary) }
        if filter.bedroomsMin != nil || filter.bedroomsMax != nil {
            bedrooms = (filter.bedroomsMin ?? Int32.min)...(filter.bedroomsMax ?? Int32.max)
        } else {
            bedrooms = nil
        }
        priceMin = filter.priceMin
        priceMax = filter.priceMax
    }

    private static func allowed(_ values: Set<String>, _ dictionary: StringDictionary) -> [Bool] {
        var allowed = [Bool](repeating: false, count: dictionary.values.count)
        for value in values { if let code = dictionary.code(of: value) { allowed[Int(code)] = true } }
        return allowed
    }

    var hasPrice: Bool { priceMin != nil || priceMax != nil }

    /// Priced rows of each of `priceGroups` whose range overlaps the price filter: those with `low <= max` minus
    /// those with `high < min` (a row cannot be in both, as `low <= high` and `min <= max`); a point row is both
    /// ends. Point rows (most of them) are counted for all groups at once (see ``RankedKeys/counts(from:through:of:at:)``).
    func priceCounts(_ cube: GroupCube, priceGroups: [Int]) -> [Int] {
        let (low, high) = (priceMin ?? Int64.min, priceMax ?? Int64.max)
        var counts = low <= high
            ? RankedKeys.counts(from: low, through: high, of: cube.points, at: priceGroups)
            : [Int](repeating: 0, count: priceGroups.count)
        for (i, c) in priceGroups.enumerated() where cube.lows[c].count > 0 {
            counts[i] += priceMax.map { cube.lows[c].count(notAbove: $0) } ?? cube.lows[c].count
            if let priceMin { counts[i] -= cube.highs[c].count(below: priceMin) }
        }
        return counts
    }
}

/// Total and facet counts computed from the cube for the outputs it can answer.
struct CubeCounts {
    var total: Int?
    var facets: [FacetField: [(value: FacetValue, count: Int)]] = [:]

    /// Counts `total` (when asked) and the `facets` (city, listing type, bedrooms, price bucket only).
    init(cube: GroupCube, filter: CubeFilter, total wantTotal: Bool, facets: [FacetField],
         statusDictionary: StringDictionary, cityDictionary: StringDictionary) {
        let wantCity = facets.contains(.city)
        let wantType = facets.contains(.listingType)
        let wantBedrooms = facets.contains(.bedrooms)
        let wantPrice = facets.contains(.priceBucket)
        var total = 0
        var cityCounts = [Int](repeating: 0, count: wantCity ? cityDictionary.values.count : 0)
        var typeCounts = [Int](repeating: 0, count: ListingType.allCases.count)
        var bedroomCounts: [Int32: Int] = [:]
        var bucketCounts = [Int](repeating: 0, count: PriceBuckets.lowerBounds.count)
        let hasPrice = filter.hasPrice
        // Without a price filter every output counts whole groups; with one, the outputs under it count price
        // groups by rank (the caller never asks for those together with a status filter), and only the
        // price-bucket facet (which drops the price filter) still reads the groups.
        let bucketCount = GroupCube.bucketCount
        let groupOutputs = wantPrice || (!hasPrice && (wantTotal || wantCity || wantType || wantBedrooms))
        /// Whether a group passes the type, city and bedroom filters.
        func passes(_ key: GroupCube.Key) -> (type: Bool, city: Bool, bedrooms: Bool) {
            (filter.typeMask & (1 &<< UInt64(key.type)) != 0,
             filter.cities.map { Int(key.city) < $0.count && $0[Int(key.city)] } ?? true,
             filter.bedrooms.map { key.hasBedrooms && $0.contains(key.bedrooms) } ?? true)
        }
        /// Counts `n` rows of a group in the total and in each facet whose other filters the group passes.
        func add(_ n: Int, of key: GroupCube.Key) {
            let (t, c, b) = passes(key)
            if wantTotal && t && c && b { total += n }
            if wantCity && t && b { cityCounts[Int(key.city)] += n }
            if wantType && c && b { typeCounts[Int(key.type)] += n }
            if wantBedrooms && t && c && key.hasBedrooms { bedroomCounts[key.bedrooms, default: 0] += n }
        }
        for g in cube.keys.indices where groupOutputs && cube.counts[g] > 0 {
            let key = cube.keys[g]
            if let statuses = filter.statuses, !(Int(key.status) < statuses.count && statuses[Int(key.status)]) {
                continue
            }
            if !hasPrice { add(Int(cube.counts[g]), of: key) }
            let (t, c, b) = passes(key)
            if wantPrice && t && c && b {
                for i in 0..<bucketCount { bucketCounts[i] += Int(cube.buckets[g * bucketCount + i]) }
            }
        }
        if hasPrice && (wantTotal || wantCity || wantType || wantBedrooms) {
            // The groups some output counts, then their price counts all at once (see `priceCounts`).
            let counted = cube.priceKeys.indices.filter { g in
                guard cube.pricedCount(g) > 0 else { return false }
                let key = cube.priceKeys[g]
                let (t, c, b) = passes(key)
                return (wantTotal && t && c && b) || (wantCity && t && b) || (wantType && c && b)
                    || (wantBedrooms && t && c && key.hasBedrooms)
            }
            for (g, n) in zip(counted, filter.priceCounts(cube, priceGroups: counted)) { add(n, of: cube.priceKeys[g]) }
        }
        self.total = wantTotal ? total : nil
        if wantCity {
            self.facets[.city] = cityDictionary.facetEntries(cityCounts)
        }
        if wantType {
            self.facets[.listingType] = typeCounts.enumerated().map {
                (.listingType(ListingType(rawValue: UInt8($0.offset)) ?? .existing), $0.element)
            }
        }
        if wantBedrooms { self.facets[.bedrooms] = bedroomCounts.map { (.bedrooms($0.key), $0.value) } }
        if wantPrice { self.facets[.priceBucket] = bucketCounts.enumerated().map { (.priceBucket($0.offset), $0.element) } }
        for (field, entries) in self.facets where field != .city { self.facets[field] = FacetCounter.ordered(entries) }
    }
}
