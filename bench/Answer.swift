import ExploreQuery

/// What the three engines must agree on for one page: the page's ids in order, the total and the facets.
struct Answer: Equatable {
    var ids: [ListingID]
    var total: Int?
    var facets: [FacetCounts]
}

/// The sort position of a row: its sort value (price or creation time; `nil` for an unpriced listing in a
/// price order) and its id, the tie-breaker. The reference and SQLite page with it (keyset paging).
struct PageKey: Equatable {
    var value: Int64?
    var id: ListingID

    init(value: Int64?, id: ListingID) {
        self.value = value
        self.id = id
    }

    init(row: ExploreListing, sort: SortOrder) {
        switch sort {
        case .priceAscending, .priceDescending:
            // A listing with only one end of its range set sorts by that end.
            self.init(value: row.priceFrom ?? row.priceTo, id: row.id)
        case .newest, .oldest: self.init(value: row.createdAt, id: row.id)
        }
    }

    /// Whether `self` comes strictly before `other` in `sort`: the documented total order (price orders put
    /// unpriced listings last; the listing id breaks ties ascending).
    func precedes(_ other: PageKey, in sort: SortOrder) -> Bool {
        switch (value, other.value) {
        case (nil, nil):
            return id < other.id
        case (nil, _):
            return false
        case (_, nil):
            return true
        case (let lhs?, let rhs?):
            if lhs != rhs {
                switch sort {
                case .priceAscending, .oldest: return lhs < rhs
                case .priceDescending, .newest: return lhs > rhs
                }
            }
            return id < other.id
        }
    }
}

/// Facet helpers shared by the reference and the SQLite engine, so both order counts exactly as documented.
enum FacetOrdering {
    /// Orders values of one facet: text by string, types by raw value, bedrooms and buckets numerically.
    static func valuePrecedes(_ lhs: FacetValue, _ rhs: FacetValue) -> Bool {
        switch (lhs, rhs) {
        case (.text(let a), .text(let b)): a < b
        case (.listingType(let a), .listingType(let b)): a.rawValue < b.rawValue
        case (.bedrooms(let a), .bedrooms(let b)): a < b
        case (.priceBucket(let a), .priceBucket(let b)): a < b
        default: false
        }
    }

    /// Counts in documented order: most frequent first, ties by value, zero counts left out.
    static func sorted(field: FacetField, _ counts: [(value: FacetValue, count: Int)]) -> FacetCounts {
        let ordered = counts.filter { $0.count > 0 }.sorted { lhs, rhs in
            lhs.count != rhs.count ? lhs.count > rhs.count : valuePrecedes(lhs.value, rhs.value)
        }
        return FacetCounts(field: field, counts: ordered)
    }

    /// The price buckets `[priceFrom, priceTo]` overlaps, as indexes into ``PriceBuckets/lowerBounds``.
    static func buckets(priceFrom: Int64, priceTo: Int64) -> ClosedRange<Int>? {
        let bounds = PriceBuckets.lowerBounds
        // Bucket i is [bounds[i], bounds[i+1]); the last one is open-ended.
        var first: Int?
        var last: Int?
        for index in bounds.indices {
            let lower = bounds[index]
            let upper = index + 1 < bounds.count ? bounds[index + 1] : Int64.max
            if priceFrom < upper && priceTo >= lower {
                if first == nil { first = index }
                last = index
            }
        }
        guard let first, let last else { return nil }
        return first...last
    }
}

extension Answer {
    /// A one-line description of the first difference, for mismatch reports.
    func difference(from other: Answer, names: (String, String)) -> String? {
        if total != other.total {
            return "total \(names.0)=\(total.map(String.init) ?? "nil") \(names.1)=\(other.total.map(String.init) ?? "nil")"
        }
        if ids != other.ids {
            let index = zip(ids, other.ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                ?? min(ids.count, other.ids.count)
            return "page ids differ at position \(index) (\(names.0) \(ids.count) rows, \(names.1) \(other.ids.count) rows): "
                + "\(names.0)=\(Array(ids.prefix(index + 3).suffix(4))) \(names.1)=\(Array(other.ids.prefix(index + 3).suffix(4)))"
        }
        if facets.map(\.field) != other.facets.map(\.field) {
            return "facet fields \(names.0)=\(facets.map(\.field.name)) \(names.1)=\(other.facets.map(\.field.name))"
        }
        for (lhs, rhs) in zip(facets, other.facets) where lhs != rhs {
            let index = zip(lhs.counts, rhs.counts).enumerated()
                .first { $0.element.0.value != $0.element.1.value || $0.element.0.count != $0.element.1.count }?.offset
                ?? min(lhs.counts.count, rhs.counts.count)
            func entry(_ counts: [(value: FacetValue, count: Int)]) -> String {
                index < counts.count ? "\(counts[index].value)=\(counts[index].count)" : "end"
            }
            return "facet \(lhs.field.name) differs at entry \(index) of \(lhs.counts.count)/\(rhs.counts.count): "
                + "\(names.0) \(entry(lhs.counts)), \(names.1) \(entry(rhs.counts))"
        }
        return nil
    }
}
