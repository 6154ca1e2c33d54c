/// Filters of a search. `nil` (or an empty set is rejected by validation) means "no constraint".
///
/// Every filter can be named (``FilterField``), so servers can switch one off by configuration and
/// facets can leave out their own field's filter.
public struct SearchFilter: Sendable, Hashable {
    public var listingTypes: Set<ListingType>?
    public var statuses: Set<String>?
    public var cities: Set<String>?
    public var areas: Set<String>?
    public var locationIDs: Set<Int64>?
    /// A listing matches when its `[priceFrom, priceTo]` overlaps `[priceMin, priceMax]`; listings without a
    /// price never match a price filter. Either end may be open.
    public var priceMin: Int64?
    public var priceMax: Int64?
    /// Inclusive bounds; listings without bedrooms (developments) never match a bedrooms filter.
    public var bedroomsMin: Int32?
    public var bedroomsMax: Int32?
    /// Inclusive lower bound; listings without bathrooms never match.
    public var bathroomsMin: Int32?
    /// `createdAt >= createdAfter` (microseconds since the epoch).
    public var createdAfter: Int64?
    /// `createdAt < createdBefore` (microseconds since the epoch).
    public var createdBefore: Int64?

    public init() {}

    /// The fields this filter constrains, for feature flags and validation messages.
    public var usedFields: Set<FilterField> {
        var fields: Set<FilterField> = []
        if listingTypes != nil { fields.insert(.listingType) }
        if statuses != nil { fields.insert(.status) }
        if cities != nil { fields.insert(.city) }
        if areas != nil { fields.insert(.area) }
        if locationIDs != nil { fields.insert(.locationID) }
        if priceMin != nil || priceMax != nil { fields.insert(.price) }
        if bedroomsMin != nil || bedroomsMax != nil { fields.insert(.bedrooms) }
        if bathroomsMin != nil { fields.insert(.bathrooms) }
        if createdAfter != nil || createdBefore != nil { fields.insert(.createdAt) }
        return fields
    }
}

/// The fields a search can filter on. Raw values are stable: the wire protocol and feature flags use them.
public enum FilterField: UInt8, Sendable, Hashable, CaseIterable {
    case listingType = 0
    case status = 1
    case city = 2
    case area = 3
    case locationID = 4
    case price = 5
    case bedrooms = 6
    case bathrooms = 7
    case createdAt = 8

    /// The spelling used on the command line, in configuration and in messages.
    public var name: String {
        switch self {
        case .listingType: "listing_type"
        case .status: "status"
        case .city: "city"
        case .area: "area"
        case .locationID: "location_id"
        case .price: "price"
        case .bedrooms: "bedrooms"
        case .bathrooms: "bathrooms"
        case .createdAt: "created_at"
        }
    }

    /// Parses ``name``; `nil` for an unknown field.
    public init?(name: String) {
        guard let field = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = field
    }
}

/// Result order. The listing id breaks ties (ascending), so every order is total and cursors are exact.
/// Listings without a price sort after all priced listings in both price orders.
public enum SortOrder: UInt8, Sendable, Hashable, CaseIterable {
    case priceAscending = 0
    case priceDescending = 1
    case newest = 2
    case oldest = 3

    public var name: String {
        switch self {
        case .priceAscending: "price_asc"
        case .priceDescending: "price_desc"
        case .newest: "newest"
        case .oldest: "oldest"
        }
    }

    public init?(name: String) {
        guard let order = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = order
    }
}

/// Facets a search can ask for. Raw values are stable (wire protocol).
public enum FacetField: UInt8, Sendable, Hashable, CaseIterable {
    case city = 0
    case area = 1
    case listingType = 2
    case bedrooms = 3
    case priceBucket = 4

    public var name: String {
        switch self {
        case .city: "city"
        case .area: "area"
        case .listingType: "listing_type"
        case .bedrooms: "bedrooms"
        case .priceBucket: "price"
        }
    }

    public init?(name: String) {
        guard let facet = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = facet
    }

    /// The filter a facet on this field leaves out when counting, as faceted-search UIs expect.
    public var ownFilter: FilterField {
        switch self {
        case .city: .city
        case .area: .area
        case .listingType: .listingType
        case .bedrooms: .bedrooms
        case .priceBucket: .price
        }
    }
}

/// Columns a client can ask for. `id` is always returned. Bit positions are stable (wire protocol).
public struct ColumnSet: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let listingType = ColumnSet(rawValue: 1 << 0)
    public static let status = ColumnSet(rawValue: 1 << 1)
    public static let title = ColumnSet(rawValue: 1 << 2)
    public static let locationID = ColumnSet(rawValue: 1 << 3)
    public static let priceFrom = ColumnSet(rawValue: 1 << 4)
    public static let priceTo = ColumnSet(rawValue: 1 << 5)
    public static let bedrooms = ColumnSet(rawValue: 1 << 6)
    public static let bathrooms = ColumnSet(rawValue: 1 << 7)
    public static let primaryImageURL = ColumnSet(rawValue: 1 << 8)
    public static let city = ColumnSet(rawValue: 1 << 9)
    public static let area = ColumnSet(rawValue: 1 << 10)
    public static let createdAt = ColumnSet(rawValue: 1 << 11)

    public static let all = ColumnSet(rawValue: (1 << 12) - 1)

    /// Column names in bit order, as used on the command line.
    public static let named: [(name: String, column: ColumnSet)] = [
        ("listing_type", .listingType), ("status", .status), ("title", .title), ("location_id", .locationID),
        ("price_from", .priceFrom), ("price_to", .priceTo), ("bedrooms", .bedrooms), ("bathrooms", .bathrooms),
        ("primary_image_url", .primaryImageURL), ("city", .city), ("area", .area), ("created_at", .createdAt),
    ]
}

/// Where a page starts.
public enum PageStart: Sendable, Hashable {
    /// The first page.
    case first
    /// Skip this many rows (0…``SearchQuery/maximumOffset``); meant for small pages near the top.
    case offset(Int)
    /// Continue after the last row of a previous page; stays correct while rows change.
    case after(SearchCursor)
}

/// An opaque keyset cursor. Clients must treat the bytes as opaque and send them back unchanged.
public struct SearchCursor: Sendable, Hashable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
}

/// A search over the explore read model.
public struct SearchQuery: Sendable, Hashable {
    public static let limitRange: ClosedRange<Int> = 1...1000
    public static let maximumOffset = 10_000

    public var filter: SearchFilter
    public var sort: SortOrder
    /// Page size, 1…1000.
    public var limit: Int
    public var start: PageStart
    /// Whether to compute the exact number of matching listings.
    public var includeTotal: Bool
    public var facets: Set<FacetField>
    /// Columns returned besides `id`.
    public var columns: ColumnSet

    public init(
        filter: SearchFilter = SearchFilter(), sort: SortOrder = .newest, limit: Int = 20,
        start: PageStart = .first, includeTotal: Bool = true, facets: Set<FacetField> = [],
        columns: ColumnSet = .all
    ) {
        self.filter = filter
        self.sort = sort
        self.limit = limit
        self.start = start
        self.includeTotal = includeTotal
        self.facets = facets
        self.columns = columns
    }
}

/// Fixed price-bucket boundaries used by the price facet: bucket `i` is `[bounds[i], bounds[i+1])`, the last one
/// is open-ended. A listing counts in every bucket its price range overlaps, matching the price filter's rule.
public enum PriceBuckets {
    public static let lowerBounds: [Int64] = [
        0, 100_000, 200_000, 300_000, 400_000, 500_000, 750_000, 1_000_000, 2_000_000, 5_000_000,
    ]
}

/// One facet value and its count.
public enum FacetValue: Sendable, Hashable {
    case text(String)
    case listingType(ListingType)
    case bedrooms(Int32)
    /// Index into ``PriceBuckets/lowerBounds``.
    case priceBucket(Int)
}

/// Counts for one facet, most frequent first (ties by value), zero counts omitted.
public struct FacetCounts: Sendable, Hashable {
    public var field: FacetField
    public var counts: [(value: FacetValue, count: Int)]

    public init(field: FacetField, counts: [(value: FacetValue, count: Int)]) {
        self.field = field
        self.counts = counts
    }

    public static func == (lhs: FacetCounts, rhs: FacetCounts) -> Bool {
        lhs.field == rhs.field && lhs.counts.elementsEqual(rhs.counts) { $0.value == $1.value && $0.count == $1.count }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(field)
        for entry in counts {
            hasher.combine(entry.value)
            hasher.combine(entry.count)
        }
    }
}

/// The answer to a ``SearchQuery``.
public struct SearchResult: Sendable, Hashable {
    /// Exact number of listings matching the filter; `nil` when the query did not ask for it.
    public var total: Int?
    /// The page, in sort order. Columns the query did not ask for hold unspecified values: read only ``columns``.
    public var rows: [ExploreListing]
    /// The columns the query asked for.
    public var columns: ColumnSet
    /// Cursor for the next page; `nil` on the last page.
    public var nextCursor: SearchCursor?
    /// One entry per requested facet, in ``FacetField`` raw-value order.
    public var facets: [FacetCounts]

    public init(total: Int?, rows: [ExploreListing], columns: ColumnSet, nextCursor: SearchCursor?, facets: [FacetCounts]) {
        self.total = total
        self.rows = rows
        self.columns = columns
        self.nextCursor = nextCursor
        self.facets = facets
    }
}

/// A query the core refuses, with a stable code.
public struct QueryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable error codes; new ones may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let unknownField = Code(rawValue: 1)
        public static let invalidRange = Code(rawValue: 2)
        public static let limitOutOfRange = Code(rawValue: 3)
        public static let malformedCursor = Code(rawValue: 4)
        /// A cursor produced for a different filter or sort.
        public static let cursorMismatch = Code(rawValue: 5)
        public static let invalidValue = Code(rawValue: 6)
        public static let offsetOutOfRange = Code(rawValue: 7)
        /// A filter, facet or listing type switched off by configuration.
        public static let disabled = Code(rawValue: 8)

        public var description: String {
            switch self {
            case .unknownField: "unknown_field"
            case .invalidRange: "invalid_range"
            case .limitOutOfRange: "limit_out_of_range"
            case .malformedCursor: "malformed_cursor"
            case .cursorMismatch: "cursor_mismatch"
            case .invalidValue: "invalid_value"
            case .offsetOutOfRange: "offset_out_of_range"
            case .disabled: "disabled"
            default: "code_\(rawValue)"
            }
        }
    }

    public var code: Code
    /// A one-line explanation naming the offending field; never echoes large payloads.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
