import DemoData
import ExploreQuery

/// The query mix's and the update stream's generator: SplitMix64 on one stream of the seed, so a seed names one
/// workload on every platform.
struct BenchRandom {
    private var base: SplitMix64

    init(seed: UInt64, stream: UInt64) {
        base = SplitMix64(seed: seed &+ stream &* 0x9E37_79B9_7F4A_7C15)
        _ = base.next()
    }

    mutating func next() -> UInt64 { base.next() }

    /// Uniform in `0..<bound`.
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    mutating func chance(_ probability: Double) -> Bool { unit() < probability }
}

/// The kinds of request explore traffic sends.
enum QueryClass: String, CaseIterable, Codable {
    /// City + type + price range + bedrooms, sorted by price or newest, 20 per page, total + 3 facets.
    case typical
    /// The same kind of search followed page after page through the keyset cursor.
    case deepPaging = "deep_paging"
    /// Few filters (only a type, a city, or nothing) with total and facets.
    case broad
    /// Area + tight price range + bedrooms.
    case selective
}

/// One unit of the mix: a search, followed for `pages` pages (1 except for deep paging). Every page is one
/// measured query.
struct MixItem {
    var queryClass: QueryClass
    var query: SearchQuery
    var pages: Int
}

/// Builds the deterministic query mix. Cities and areas are sampled from the rows, so they follow the data's
/// Zipf skew: popular cities get most of the traffic, as on the real site.
struct QueryMixGenerator {
    private var random: BenchRandom
    private let rows: [ExploreListing]

    init(rows: [ExploreListing], seed: UInt64) {
        precondition(!rows.isEmpty, "the query mix samples rows")
        self.rows = rows
        random = BenchRandom(seed: seed, stream: 0x51E7_C4)
    }

    /// `perClass` measured queries per class; deep-paging chains count each page.
    mutating func mix(perClass: Int, deepPages: Int) -> [QueryClass: [MixItem]] {
        var items: [QueryClass: [MixItem]] = [:]
        items[.typical] = (0..<perClass).map { _ in typical() }
        items[.deepPaging] = (0..<max(1, perClass / deepPages)).map { _ in deep(pages: deepPages) }
        items[.broad] = (0..<perClass).map { _ in broad() }
        items[.selective] = (0..<perClass).map { _ in selective() }
        return items
    }

    private mutating func sampleRow() -> ExploreListing { rows[random.below(rows.count)] }

    /// A price window around a sampled listing's price, as a user would drag the slider.
    private mutating func priceWindow(around row: ExploreListing, spread: Double) -> (Int64?, Int64?) {
        guard let price = row.priceFrom else { return (nil, 300_000) }
        let low = Int64(Double(price) * (1 - spread * random.unit())) / 10_000 * 10_000
        let high = Int64(Double(price) * (1 + spread * random.unit())) / 10_000 * 10_000 + 10_000
        return (random.chance(0.2) ? nil : low, random.chance(0.1) ? nil : high)
    }

    private mutating func sort() -> SortOrder {
        let roll = random.unit()
        return roll < 0.45 ? .priceAscending : roll < 0.85 ? .newest : roll < 0.95 ? .priceDescending : .oldest
    }

    private mutating func facets() -> Set<FacetField> {
        random.chance(0.5) ? [.city, .area, .priceBucket] : [.listingType, .bedrooms, .priceBucket]
    }

    private mutating func typical() -> MixItem {
        let row = sampleRow()
        var filter = SearchFilter()
        filter.cities = [row.city]
        filter.listingTypes = [row.listingType]
        (filter.priceMin, filter.priceMax) = priceWindow(around: row, spread: 0.5)
        if let bedrooms = row.bedrooms {
            filter.bedroomsMin = max(0, bedrooms - Int32(random.below(2)))
            if random.chance(0.3) { filter.bedroomsMax = bedrooms + 1 }
        }
        if random.chance(0.1) { filter.cities?.insert(sampleRow().city) }
        // Page 2 or 3 by offset now and then: the "next" button near the top of the list.
        let start: PageStart = random.chance(0.15) ? .offset(20 * (1 + random.below(2))) : .first
        let query = SearchQuery(filter: filter, sort: sort(), limit: 20, start: start, includeTotal: true,
                                facets: facets())
        return MixItem(queryClass: .typical, query: query, pages: 1)
    }

    private mutating func deep(pages: Int) -> MixItem {
        let row = sampleRow()
        var filter = SearchFilter()
        filter.cities = [row.city]
        if random.chance(0.7) { filter.listingTypes = [row.listingType] }
        if random.chance(0.5) { (filter.priceMin, filter.priceMax) = priceWindow(around: row, spread: 0.8) }
        let query = SearchQuery(filter: filter, sort: sort(), limit: 20, start: .first, includeTotal: true,
                                facets: [])
        return MixItem(queryClass: .deepPaging, query: query, pages: pages)
    }

    private mutating func broad() -> MixItem {
        var filter = SearchFilter()
        let roll = random.unit()
        if roll < 0.4 {
            filter.listingTypes = [random.chance(0.3) ? .development : .existing]
        } else if roll < 0.7 {
            filter.cities = [sampleRow().city]
        } else if roll < 0.8 {
            filter.statuses = ["published"]
        }
        let facets: Set<FacetField> = random.chance(0.5)
            ? [.city, .listingType, .priceBucket] : [.listingType, .bedrooms, .priceBucket]
        let query = SearchQuery(filter: filter, sort: sort(), limit: 20, start: .first, includeTotal: true,
                                facets: facets)
        return MixItem(queryClass: .broad, query: query, pages: 1)
    }

    private mutating func selective() -> MixItem {
        let row = sampleRow()
        var filter = SearchFilter()
        filter.cities = [row.city]
        filter.areas = [row.area]
        (filter.priceMin, filter.priceMax) = priceWindow(around: row, spread: 0.1)
        if let bedrooms = row.bedrooms {
            filter.bedroomsMin = bedrooms
            filter.bedroomsMax = bedrooms
        }
        if random.chance(0.3), let bathrooms = row.bathrooms { filter.bathroomsMin = bathrooms }
        let query = SearchQuery(filter: filter, sort: sort(), limit: 20, start: .first, includeTotal: true,
                                facets: random.chance(0.5) ? [.bedrooms, .priceBucket] : [])
        return MixItem(queryClass: .selective, query: query, pages: 1)
    }
}

/// A deterministic change stream modelled on the projector's traffic: price changes, listings hidden from
/// explore (deleted from the read model) and shown again, and brand-new listings.
struct UpdateStreamGenerator {
    private var random: BenchRandom
    private var current: [ListingID: ExploreListing]
    private var visible: [ListingID]
    private var hidden: [ExploreListing] = []
    private var nextID: ListingID
    private var clock: Int64 = 1_767_225_600_000_000

    /// Counts of each kind of change generated.
    private(set) var priceChanges = 0
    private(set) var deletes = 0
    private(set) var reshown = 0
    private(set) var inserts = 0

    init(rows: [ExploreListing], seed: UInt64) {
        random = BenchRandom(seed: seed, stream: 0x0BDA_7E)
        current = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
        visible = rows.map(\.id)
        nextID = (rows.map(\.id).max() ?? 0) + 1
    }

    mutating func batches(count: Int, size: Int) -> [ListingChangeBatch] {
        (0..<count).map { _ in ListingChangeBatch((0..<size).map { _ in change() }) }
    }

    private mutating func change() -> ListingChange {
        let roll = random.unit()
        if roll < 0.6 || visible.count < 2 {
            let id = visible[random.below(visible.count)]
            var row = current[id]!
            let factor = 0.9 + 0.2 * random.unit()
            if let from = row.priceFrom, let to = row.priceTo {
                row.priceFrom = max(10_000, Int64(Double(from) * factor) / 1_000 * 1_000)
                row.priceTo = max(row.priceFrom!, Int64(Double(to) * factor) / 1_000 * 1_000)
            }
            current[id] = row
            priceChanges += 1
            return .upsert(row)
        }
        if roll < 0.75 {
            let position = random.below(visible.count)
            let id = visible.swapRemoveAt(position)
            hidden.append(current.removeValue(forKey: id)!)
            deletes += 1
            return .delete(id)
        }
        if roll < 0.85, !hidden.isEmpty {
            var row = hidden.swapRemoveAt(random.below(hidden.count))
            row.status = "active"
            current[row.id] = row
            visible.append(row.id)
            reshown += 1
            return .upsert(row)
        }
        // A new listing like a sampled one, in the same city and area, created now.
        var row = current[visible[random.below(visible.count)]]!
        row.id = nextID
        nextID += 1
        clock += 1_000_000
        row.createdAt = clock
        row.status = "published"
        row.title = "New " + row.title
        current[row.id] = row
        visible.append(row.id)
        inserts += 1
        return .upsert(row)
    }
}

extension Array {
    /// Removes the element at `index` in O(1) by moving the last element into its place.
    mutating func swapRemoveAt(_ index: Int) -> Element {
        swapAt(index, count - 1)
        return removeLast()
    }
}
