import DemoData
import ExploreQuery
import ExploreWire


/// Random values for every message, including extremes (Int64.min/max, empty sets, unicode).
struct RandomMessages {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func bool() -> Bool { Bool.random(using: &rng) }

    mutating func int64() -> Int64 {
        switch Int.random(in: 0..<5, using: &rng) {
        case 0: [Int64.min, Int64.max, 0, -1, 1].randomElement(using: &rng)!
        case 1: Int64.random(in: Int64.min...Int64.max, using: &rng)
        default: Int64.random(in: -1_000_000...10_000_000, using: &rng)
        }
    }

    mutating func int32() -> Int32 { Int32.random(in: -5...Int32.max, using: &rng) }

    mutating func string() -> String {
        let pool = ["Lisbon", "Porto", "Faro", "", "São João", "北京", "a b", "🏠 home", "x"]
        return pool.randomElement(using: &rng)! + (bool() ? "" : String(Int.random(in: 0...999, using: &rng)))
    }

    mutating func strings() -> Set<String> {
        Set((0..<Int.random(in: 0...4, using: &rng)).map { _ in string() })
    }

    mutating func optional<T>(_ make: (inout RandomMessages) -> T) -> T? {
        bool() ? make(&self) : nil
    }

    mutating func query() -> SearchQuery {
        var filter = SearchFilter()
        if bool() { filter.listingTypes = Set(ListingType.allCases.filter { _ in bool() }) }
        filter.statuses = optional { $0.strings() }
        filter.cities = optional { $0.strings() }
        filter.areas = optional { $0.strings() }
        filter.locationIDs = optional { rm in Set((0..<Int.random(in: 0...5, using: &rm.rng)).map { _ in rm.int64() }) }
        filter.priceMin = optional { $0.int64() }
        filter.priceMax = optional { $0.int64() }
        filter.bedroomsMin = optional { $0.int32() }
        filter.bedroomsMax = optional { $0.int32() }
        filter.bathroomsMin = optional { $0.int32() }
        filter.createdAfter = optional { $0.int64() }
        filter.createdBefore = optional { $0.int64() }
        let start: PageStart = switch Int.random(in: 0..<3, using: &rng) {
        case 0: .first
        case 1: .offset(Int(int64()))
        default: .after(SearchCursor(bytes: (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }))
        }
        return SearchQuery(
            filter: filter, sort: SortOrder.allCases.randomElement(using: &rng)!, limit: Int(int64()), start: start,
            includeTotal: bool(), facets: Set(FacetField.allCases.filter { _ in bool() }),
            columns: ColumnSet(rawValue: UInt16.random(in: 0...ColumnSet.all.rawValue, using: &rng)))
    }

    mutating func row() -> ExploreListing {
        ExploreListing(
            id: int64(), listingType: ListingType.allCases.randomElement(using: &rng)!, status: string(),
            title: string(), locationID: int64(), priceFrom: optional { $0.int64() }, priceTo: optional { $0.int64() },
            bedrooms: optional { $0.int32() }, bathrooms: optional { $0.int32() },
            primaryImageURL: optional { $0.string() }, city: string(), area: string(), createdAt: int64())
    }

    mutating func columns() -> ColumnSet {
        ColumnSet(rawValue: UInt16.random(in: 0...ColumnSet.all.rawValue, using: &rng))
    }

    mutating func searchResult() -> SearchResult {
        let columns = columns()
        let rows = (0..<Int.random(in: 0...8, using: &rng)).map { _ in row().projected(onto: columns) }
        let facets = FacetField.allCases.filter { _ in bool() }.map { field in
            FacetCounts(field: field, counts: (0..<Int.random(in: 0...5, using: &rng)).map { _ in
                let value: FacetValue = switch field {
                case .city, .area: .text(string())
                case .listingType: .listingType(ListingType.allCases.randomElement(using: &rng)!)
                case .bedrooms: .bedrooms(int32())
                case .priceBucket: .priceBucket(Int.random(in: 0..<PriceBuckets.lowerBounds.count, using: &rng))
                }
                return (value, Int.random(in: 1...1_000_000, using: &rng))
            })
        }
        return SearchResult(
            total: optional { Int.random(in: 0...Int.max, using: &$0.rng) }, rows: rows, columns: columns,
            nextCursor: optional { rm in SearchCursor(bytes: (0..<Int.random(in: 0...30, using: &rm.rng)).map { _ in UInt8.random(in: 0...255, using: &rm.rng) }) },
            facets: facets)
    }

    mutating func features() -> FeatureFlags {
        FeatureFlags(enabledFilters: Set(FilterField.allCases.filter { _ in bool() }),
                     enabledListingTypes: Set(ListingType.allCases.filter { _ in bool() }))
    }

    mutating func bytes(_ range: ClosedRange<Int>) -> [UInt8] {
        (0..<Int.random(in: range, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    mutating func request() -> WireRequest {
        switch Int.random(in: 0..<7, using: &rng) {
        case 0: .hello(Hello(minimumVersion: .random(in: 0...255, using: &rng),
                             maximumVersion: .random(in: 0...255, using: &rng), adminToken: bytes(0...40)))
        case 1: .ping(bytes(0...64))
        case 2: .search(query())
        case 3: .get(ids: (0..<Int.random(in: 0...20, using: &rng)).map { _ in int64() }, columns: columns())
        case 4: .stats
        case 5: .rebuild
        default: .verify
        }
    }

    mutating func randomRows() -> WireResponse {
        let columns = columns()
        return .rows(columns: columns, rows: (0..<Int.random(in: 0...6, using: &rng)).map { _ in row().projected(onto: columns) })
    }

    /// `STATS_RESULT` of version 1 (no feed report) or 2 (a random feed report, or none).
    mutating func statistics() -> WireResponse {
        let version: UInt8 = bool() ? 1 : 2
        var feed: FeedReport?
        if version >= 2 && bool() {
            var report = FeedReport(
                isConnected: bool(), isBootstrapped: bool(), batches: .random(in: 0...UInt64.max, using: &rng),
                failures: .random(in: 0...1000, using: &rng), rejectedEvents: .random(in: 0...UInt64.max, using: &rng))
            report.pendingChanges = optional { UInt64.random(in: 0...UInt64.max, using: &$0.rng) }
            report.lastError = optional { $0.string() }
            report.rebuild = optional {
                RebuildStatus(phase: RebuildStatus.Phase.allCases.randomElement(using: &$0.rng)!,
                              rowsDone: .random(in: 0...UInt64.max, using: &$0.rng),
                              rowsTotal: $0.optional { UInt64.random(in: 0...UInt64.max, using: &$0.rng) },
                              elapsedMicroseconds: .random(in: 0...UInt64.max, using: &$0.rng))
            }
            feed = report
        }
        return .stats(ServerStatistics(
            listingCount: .random(in: 0...UInt64.max, using: &rng), memoryBytes: .random(in: 0...UInt64.max, using: &rng),
            feedLagMicroseconds: optional { UInt64.random(in: 0...UInt64.max, using: &$0.rng) },
            lastAppliedChange: optional { UInt64.random(in: 0...UInt64.max, using: &$0.rng) },
            uptimeMicroseconds: .random(in: 0...UInt64.max, using: &rng), openConnections: .random(in: 0...1000, using: &rng),
            protocolVersion: version, features: features(), serverVersion: string(), feed: feed))
    }

    mutating func response() -> WireResponse {
        switch Int.random(in: 0..<8, using: &rng) {
        case 0: .helloAccepted(HelloAccepted(
            version: .random(in: 0...255, using: &rng), features: features(), adminGranted: bool(),
            maximumFrameSize: .random(in: 0...UInt32.max, using: &rng),
            maximumInFlight: .random(in: 0...UInt32.max, using: &rng), serverVersion: string()))
        case 1: .pong(bytes(0...64))
        case 2: .searchResult(searchResult())
        case 3: randomRows()
        case 4: statistics()
        case 5: .rebuilt(RebuildReport(listingCount: .random(in: 0...UInt64.max, using: &rng),
                                       durationMicroseconds: .random(in: 0...UInt64.max, using: &rng)))
        case 6: .verified(VerifyReport(checked: .random(in: 0...UInt64.max, using: &rng),
                                       mismatchCount: .random(in: 0...UInt64.max, using: &rng),
                                       sampleMismatchIDs: (0..<Int.random(in: 0...10, using: &rng)).map { _ in int64() },
                                       pendingCount: Bool.random(using: &rng) ? .random(in: 0...UInt64.max, using: &rng) : nil))
        default: .error(WireError(WireError.Code(rawValue: .random(in: 0...UInt16.max, using: &rng)), string()))
        }
    }
}
