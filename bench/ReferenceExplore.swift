import ExploreQuery

/// The straightforward implementation the cache is checked and measured against: an array of rows scanned
/// once per query. Obviously correct matters more here than fast, but the scan is a single pass so the
/// throughput comparison is fair: it evaluates the filter once per row and derives every facet from that pass.
struct ReferenceExplore {
    private(set) var rows: [ExploreListing]
    private var positionByID: [ListingID: Int]

    init(rows: [ExploreListing]) {
        self.rows = rows
        positionByID = Dictionary(rows.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { _, last in last })
    }

    var count: Int { rows.count }

    /// Applies upserts and deletes in order.
    mutating func apply(_ batch: ListingChangeBatch) {
        for change in batch.changes {
            switch change {
            case .upsert(let row), .upsertKeepingText(let row):
                if let position = positionByID[row.id] {
                    rows[position] = row
                } else {
                    positionByID[row.id] = rows.count
                    rows.append(row)
                }
            case .delete(let id):
                guard let position = positionByID.removeValue(forKey: id) else { continue }
                let last = rows.removeLast()
                if position < rows.count {
                    rows[position] = last
                    positionByID[last.id] = position
                }
            }
        }
    }

    /// Answers `query`; `after` continues after a row of a previous page (keyset paging). A `.after` cursor in
    /// the query itself is the cache's and is ignored here.
    func search(_ query: SearchQuery, after: PageKey?) -> Answer {
        let filter = query.filter
        let wanted = query.facets
        var skip = 0
        if case .offset(let offset) = query.start { skip = offset }
        let keep = skip + query.limit

        var total = 0
        var best: [(key: PageKey, id: ListingID)] = []
        best.reserveCapacity(keep + 1)
        var cityCounts: [String: Int] = [:]
        var areaCounts: [String: Int] = [:]
        var typeCounts: [ListingType: Int] = [:]
        var bedroomCounts: [Int32: Int] = [:]
        var bucketCounts = [Int](repeating: 0, count: PriceBuckets.lowerBounds.count)

        for row in rows {
            let failed = Self.failedField(row, filter)
            let passes = failed == .none
            if passes {
                total += 1
                let key = PageKey(row: row, sort: query.sort)
                if after.map({ $0.precedes(key, in: query.sort) }) ?? true {
                    if best.count < keep || key.precedes(best[best.count - 1].key, in: query.sort) {
                        // Bounded insertion keeps only the rows the page can need.
                        var low = 0
                        var high = best.count
                        while low < high {
                            let mid = (low + high) / 2
                            if best[mid].key.precedes(key, in: query.sort) { low = mid + 1 } else { high = mid }
                        }
                        best.insert((key, row.id), at: low)
                        if best.count > keep { best.removeLast() }
                    }
                }
            }
            guard !wanted.isEmpty else { continue }
            // A facet on F counts rows that pass every filter except F's own.
            func counts(_ facet: FacetField) -> Bool {
                guard wanted.contains(facet) else { return false }
                if passes { return true }
                if case .only(let field) = failed { return field == facet.ownFilter }
                return false
            }
            if counts(.city) { cityCounts[row.city, default: 0] += 1 }
            if counts(.area) { areaCounts[row.area, default: 0] += 1 }
            if counts(.listingType) { typeCounts[row.listingType, default: 0] += 1 }
            if counts(.bedrooms), let bedrooms = row.bedrooms { bedroomCounts[bedrooms, default: 0] += 1 }
            if counts(.priceBucket), let from = row.priceFrom ?? row.priceTo, let to = row.priceTo ?? row.priceFrom,
               let range = FacetOrdering.buckets(priceFrom: from, priceTo: to) {
                for bucket in range { bucketCounts[bucket] += 1 }
            }
        }

        var facets: [FacetCounts] = []
        for facet in FacetField.allCases where wanted.contains(facet) {
            let counts: [(value: FacetValue, count: Int)] = switch facet {
            case .city: cityCounts.map { (.text($0.key), $0.value) }
            case .area: areaCounts.map { (.text($0.key), $0.value) }
            case .listingType: typeCounts.map { (.listingType($0.key), $0.value) }
            case .bedrooms: bedroomCounts.map { (.bedrooms($0.key), $0.value) }
            case .priceBucket: bucketCounts.enumerated().map { (.priceBucket($0.offset), $0.element) }
            }
            facets.append(FacetOrdering.sorted(field: facet, counts))
        }
        let page = best.dropFirst(skip).map(\.id)
        return Answer(ids: Array(page), total: query.includeTotal ? total : nil, facets: facets)
    }

    /// The row with `id`, whose sort key continues a keyset page.
    func row(id: ListingID) -> ExploreListing? {
        positionByID[id].map { rows[$0] }
    }

    enum FilterOutcome: Equatable {
        case none
        case only(FilterField)
        case several
    }

    /// Which filters `row` fails: none, exactly one (it still counts for that field's facet), or several.
    static func failedField(_ row: ExploreListing, _ filter: SearchFilter) -> FilterOutcome {
        var outcome = FilterOutcome.none
        func fail(_ field: FilterField) -> Bool {
            if outcome == .none {
                outcome = .only(field)
                return false
            }
            outcome = .several
            return true
        }
        if let types = filter.listingTypes, !types.contains(row.listingType), fail(.listingType) { return outcome }
        if let statuses = filter.statuses, !statuses.contains(row.status), fail(.status) { return outcome }
        if let cities = filter.cities, !cities.contains(row.city), fail(.city) { return outcome }
        if let areas = filter.areas, !areas.contains(row.area), fail(.area) { return outcome }
        if let locations = filter.locationIDs, !locations.contains(row.locationID), fail(.locationID) { return outcome }
        if filter.priceMin != nil || filter.priceMax != nil {
            let matches: Bool
            // A listing with only one end of its range set is priced at that end.
            if let from = row.priceFrom ?? row.priceTo, let to = row.priceTo ?? row.priceFrom {
                matches = (filter.priceMax.map { from <= $0 } ?? true) && (filter.priceMin.map { to >= $0 } ?? true)
            } else {
                matches = false
            }
            if !matches, fail(.price) { return outcome }
        }
        if filter.bedroomsMin != nil || filter.bedroomsMax != nil {
            let matches = row.bedrooms.map { bedrooms in
                (filter.bedroomsMin.map { bedrooms >= $0 } ?? true) && (filter.bedroomsMax.map { bedrooms <= $0 } ?? true)
            } ?? false
            if !matches, fail(.bedrooms) { return outcome }
        }
        if let minimum = filter.bathroomsMin {
            if !(row.bathrooms.map { $0 >= minimum } ?? false), fail(.bathrooms) { return outcome }
        }
        if filter.createdAfter != nil || filter.createdBefore != nil {
            let matches = (filter.createdAfter.map { row.createdAt >= $0 } ?? true)
                && (filter.createdBefore.map { row.createdAt < $0 } ?? true)
            if !matches, fail(.createdAt) { return outcome }
        }
        return outcome
    }
}
