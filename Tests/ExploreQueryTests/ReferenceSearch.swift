import ExploreQuery
#if canImport(Glibc)
import Glibc
#endif

/// The obviously correct model the index is checked against: filter an array, sort it, count facets.
struct ReferenceSearch {
    var rows: [ListingID: ExploreListing] = [:]

    mutating func apply(_ batch: ListingChangeBatch) {
        for change in batch.changes {
            switch change {
            case .upsert(let row), .upsertKeepingText(let row): rows[row.id] = row
            case .delete(let id): rows[id] = nil
            }
        }
    }

    static func priceRange(_ row: ExploreListing) -> (low: Int64, high: Int64)? {
        guard let low = row.priceFrom ?? row.priceTo, let high = row.priceTo ?? row.priceFrom else { return nil }
        return (low, high)
    }

    static func matches(_ row: ExploreListing, _ f: SearchFilter, except skipped: FilterField? = nil) -> Bool {
        if skipped != .listingType, let set = f.listingTypes, !set.contains(row.listingType) { return false }
        if skipped != .status, let set = f.statuses, !set.contains(row.status) { return false }
        if skipped != .city, let set = f.cities, !set.contains(row.city) { return false }
        if skipped != .area, let set = f.areas, !set.contains(row.area) { return false }
        if skipped != .locationID, let set = f.locationIDs, !set.contains(row.locationID) { return false }
        if skipped != .price, f.priceMin != nil || f.priceMax != nil {
            guard let range = priceRange(row) else { return false }
            if let max = f.priceMax, range.low > max { return false }
            if let min = f.priceMin, range.high < min { return false }
        }
        if skipped != .bedrooms, f.bedroomsMin != nil || f.bedroomsMax != nil {
            guard let bedrooms = row.bedrooms else { return false }
            if let min = f.bedroomsMin, bedrooms < min { return false }
            if let max = f.bedroomsMax, bedrooms > max { return false }
        }
        if skipped != .bathrooms, let min = f.bathroomsMin {
            guard let bathrooms = row.bathrooms, bathrooms >= min else { return false }
        }
        if skipped != .createdAt {
            if let after = f.createdAfter, row.createdAt < after { return false }
            if let before = f.createdBefore, row.createdAt >= before { return false }
        }
        return true
    }

    /// Strict "comes before" in `sort`: unpriced rows last in price orders, id ascending on ties.
    static func before(_ a: ExploreListing, _ b: ExploreListing, _ sort: SortOrder) -> Bool {
        switch sort {
        case .priceAscending, .priceDescending:
            let pa = a.priceFrom ?? a.priceTo
            let pb = b.priceFrom ?? b.priceTo
            switch (pa, pb) {
            case (nil, nil): return a.id < b.id
            case (nil, _): return false
            case (_, nil): return true
            case (let x?, let y?):
                if x != y { return sort == .priceAscending ? x < y : x > y }
                return a.id < b.id
            }
        case .newest:
            return a.createdAt != b.createdAt ? a.createdAt > b.createdAt : a.id < b.id
        case .oldest:
            return a.createdAt != b.createdAt ? a.createdAt < b.createdAt : a.id < b.id
        }
    }

    func sorted(_ filter: SearchFilter, _ sort: SortOrder) -> [ExploreListing] {
        rows.values.filter { Self.matches($0, filter) }.sorted { Self.before($0, $1, sort) }
    }

    func facet(_ field: FacetField, _ filter: SearchFilter) -> FacetCounts {
        var counts: [FacetValue: Int] = [:]
        for row in rows.values where Self.matches(row, filter, except: field.ownFilter) {
            switch field {
            case .city: counts[.text(row.city), default: 0] += 1
            case .area: counts[.text(row.area), default: 0] += 1
            case .listingType: counts[.listingType(row.listingType), default: 0] += 1
            case .bedrooms: if let b = row.bedrooms { counts[.bedrooms(b), default: 0] += 1 }
            case .priceBucket:
                guard let range = Self.priceRange(row) else { continue }
                let bounds = PriceBuckets.lowerBounds
                for i in bounds.indices {
                    let isLast = i + 1 == bounds.count
                    if range.high >= bounds[i] && (isLast || range.low < bounds[i + 1]) {
                        counts[.priceBucket(i), default: 0] += 1
                    }
                }
            }
        }
        let ordered = counts.map { (value: $0.key, count: $0.value) }.sorted { a, b in
            if a.count != b.count { return a.count > b.count }
            switch (a.value, b.value) {
            case (.text(let x), .text(let y)): return x < y
            case (.listingType(let x), .listingType(let y)): return x.rawValue < y.rawValue
            case (.bedrooms(let x), .bedrooms(let y)): return x < y
            case (.priceBucket(let x), .priceBucket(let y)): return x < y
            default: return false
            }
        }
        return FacetCounts(field: field, counts: ordered)
    }
}

/// SplitMix64: a small seeded generator so every failure reproduces.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random rows and queries over small value domains, so keys collide and every filter hits something.
struct RandomListings {
    var random: SeededRandom
    let idRange: ClosedRange<Int64>

    static let cities = ["Lisbon", "Porto", "Faro", "Braga", "Évora"]
    static let areas = ["Centro", "Norte", "Sul", "Baixa", "Foz", "Alfama"]
    static let statuses = ["published", "active"]

    init(seed: UInt64, idRange: ClosedRange<Int64>) {
        random = SeededRandom(seed: seed)
        self.idRange = idRange
    }

    mutating func listing(id: ListingID) -> ExploreListing {
        let type: ListingType = Bool.random(using: &random) ? .development : .existing
        var priceFrom: Int64? = [50_000, 100_000, 150_000, 200_000, 450_000, 1_000_000, 2_500_000]
            .randomElement(using: &random)! + Int64.random(in: -2...2, using: &random) * 25_000
        // Now and then an odd price: between the filters' points and between the bulk load's code bounds.
        if Int.random(in: 0..<8, using: &random) == 0 { priceFrom! += Int64.random(in: 1...30_000, using: &random) }
        var priceTo: Int64? = priceFrom
        if type == .development { priceTo = priceFrom! + Int64.random(in: 0...4, using: &random) * 100_000 }
        switch Int.random(in: 0..<10, using: &random) {
        case 0: priceFrom = nil; priceTo = nil
        case 1: priceFrom = nil
        case 2: priceTo = nil
        default: break
        }
        let hasRooms = type == .existing || Int.random(in: 0..<4, using: &random) == 0
        return ExploreListing(
            id: id, listingType: type, status: Self.statuses.randomElement(using: &random)!,
            title: "Listing \(id) \(Int.random(in: 0..<1000, using: &random))",
            locationID: Int64.random(in: 1...12, using: &random), priceFrom: priceFrom, priceTo: priceTo,
            bedrooms: hasRooms ? Int32.random(in: 0...5, using: &random) : nil,
            bathrooms: hasRooms && Bool.random(using: &random) ? Int32.random(in: 1...3, using: &random) : nil,
            primaryImageURL: Bool.random(using: &random) ? "https://img.example/\(id).jpg" : nil,
            city: Self.cities.randomElement(using: &random)!, area: Self.areas.randomElement(using: &random)!,
            createdAt: 1_700_000_000_000_000 + Int64.random(in: 0...40, using: &random) * 1_000_000)
    }

    mutating func id() -> ListingID { Int64.random(in: idRange, using: &random) }

    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &random) < percent }

    mutating func subset<T: Hashable>(_ values: [T]) -> Set<T> {
        var set = Set<T>()
        while set.isEmpty {
            for value in values where chance(40) { set.insert(value) }
        }
        return set
    }

    mutating func filter() -> SearchFilter {
        var f = SearchFilter()
        if chance(30) { f.listingTypes = subset(ListingType.allCases) }
        if chance(20) { f.statuses = subset(Self.statuses + ["draft"]) }
        if chance(40) { f.cities = subset(Self.cities + ["Nowhere"]) }
        if chance(20) { f.areas = subset(Self.areas) }
        if chance(15) { f.locationIDs = subset(Array(Int64(1)...14)) }
        if chance(40) {
            let points: [Int64] = [0, 75_000, 100_000, 150_000, 199_999, 200_000, 425_000, 1_000_000, 3_000_000]
            let a = points.randomElement(using: &random)!
            let b = points.randomElement(using: &random)!
            if chance(80) { f.priceMin = min(a, b) }
            if chance(80) { f.priceMax = max(a, b) }
        }
        if chance(30) {
            let a = Int32.random(in: 0...5, using: &random)
            let b = Int32.random(in: 0...5, using: &random)
            if chance(70) { f.bedroomsMin = min(a, b) }
            if chance(70) { f.bedroomsMax = max(a, b) }
        }
        if chance(15) { f.bathroomsMin = Int32.random(in: 0...3, using: &random) }
        if chance(20) {
            let a = 1_700_000_000_000_000 + Int64.random(in: -1...41, using: &random) * 1_000_000
            let b = a + Int64.random(in: 1...20, using: &random) * 1_000_000
            if chance(70) { f.createdAfter = a }
            if chance(70) { f.createdBefore = b }
        }
        return f
    }

    mutating func changes(count: Int) -> ListingChangeBatch {
        var changes: [ListingChange] = []
        for _ in 0..<count {
            let id = id()
            changes.append(chance(25) ? .delete(id) : .upsert(listing(id: id)))
        }
        return ListingChangeBatch(changes)
    }
}

extension ReferenceSearch {
    /// A reference holding `rows` and an index bulk-loaded from the same rows.
    static func loaded(_ rows: [ExploreListing]) -> (ReferenceSearch, ExploreIndex) {
        var reference = ReferenceSearch()
        for row in rows { reference.rows[row.id] = row }
        return (reference, ExploreIndex(store: ExploreStore(bulk: rows)))
    }
}

extension ExploreIndex {
    /// Applies empty batches (a finished relayout is swapped in only at a batch) until at least `minimum`
    /// relayouts are in and none came in during the last round; gives up after about a second.
    func settleRelayouts(minimum: Int) {
        var seen = -1
        for _ in 0..<500 {
            let completed = relayoutsCompleted
            if completed >= minimum && completed == seen { return }
            seen = completed
            apply(ListingChangeBatch([]))
            usleep(2_000)
        }
    }
}
