import CSQLite
import ExploreQuery

/// A failed SQLite call, with the library's message.
struct SQLiteError: Error, CustomStringConvertible {
    var message: String
    var description: String { "sqlite: \(message)" }
}

/// SQLite in memory with the indexes a competent engineer would create for the explore queries, queried with
/// parameterized statements that are prepared once per query shape and reused.
///
/// Owns one `sqlite3` connection; used from the bench's main thread only (SQLite calls block, so they stay off
/// Swift's cooperative pool).
final class SQLiteExplore {
    private let database: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    /// SQLite copies bound text immediately with this destructor value (`SQLITE_TRANSIENT`).
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init() throws {
        var handle: OpaquePointer?
        guard sqlite3_open(":memory:", &handle) == SQLITE_OK, let handle else {
            throw SQLiteError(message: "cannot open an in-memory database")
        }
        database = handle
        try execute("""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;
            PRAGMA cache_size = -1000000;
            CREATE TABLE explore_listings (
                id INTEGER PRIMARY KEY, listing_type INTEGER NOT NULL, status TEXT NOT NULL, title TEXT NOT NULL,
                location_id INTEGER NOT NULL, price_from INTEGER, price_to INTEGER, bedrooms INTEGER,
                bathrooms INTEGER, primary_image_url TEXT, city TEXT NOT NULL, area TEXT NOT NULL,
                created_at INTEGER NOT NULL);
            """)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close(database)
    }

    /// Loads rows in one transaction, then builds the indexes and statistics.
    func load(_ rows: [ExploreListing]) throws {
        try execute("BEGIN")
        let insert = try statement("INSERT INTO explore_listings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
        for row in rows {
            let values: [SQLValue] = [
                .integer(row.id), .integer(Int64(row.listingType.rawValue)), .text(row.status), .text(row.title),
                .integer(row.locationID), row.priceFrom.map(SQLValue.integer) ?? .null,
                row.priceTo.map(SQLValue.integer) ?? .null, row.bedrooms.map { .integer(Int64($0)) } ?? .null,
                row.bathrooms.map { .integer(Int64($0)) } ?? .null, row.primaryImageURL.map(SQLValue.text) ?? .null,
                .text(row.city), .text(row.area), .integer(row.createdAt),
            ]
            try bind(values, to: insert)
            guard sqlite3_step(insert) == SQLITE_DONE else { throw error() }
            sqlite3_reset(insert)
        }
        try execute("COMMIT")
        // What the explore traffic filters and sorts on: city + type + price/created_at for the common
        // queries, area for the selective ones, type or nothing for the broad ones.
        try execute("""
            CREATE INDEX explore_city_type_price ON explore_listings (city, listing_type, price_from);
            CREATE INDEX explore_city_type_created ON explore_listings (city, listing_type, created_at);
            CREATE INDEX explore_area_city_price ON explore_listings (area, city, price_from);
            CREATE INDEX explore_type_created ON explore_listings (listing_type, created_at);
            CREATE INDEX explore_type_price ON explore_listings (listing_type, price_from);
            CREATE INDEX explore_created ON explore_listings (created_at);
            CREATE INDEX explore_price ON explore_listings (price_from);
            ANALYZE;
            """)
    }

    /// Answers `query`, continuing after `after` when paging by keyset.
    func search(_ query: SearchQuery, after: PageKey?) throws -> (answer: Answer, lastKey: PageKey?) {
        var values: [SQLValue] = []
        var conditions = Self.conditions(query.filter, except: nil, values: &values)
        let priceFiltered = query.filter.priceMin != nil || query.filter.priceMax != nil
        if let after {
            conditions.append(Self.keysetCondition(after, sort: query.sort, values: &values))
        }
        var offset = 0
        if case .offset(let skip) = query.start { offset = skip }
        let order: String = switch query.sort {
        // With a price filter unpriced rows cannot match, so the plain order lets SQLite walk a price index.
        case .priceAscending: priceFiltered ? "price_from, id" : "price_from IS NULL, price_from, id"
        case .priceDescending: priceFiltered ? "price_from DESC, id" : "price_from IS NULL, price_from DESC, id"
        case .newest: "created_at DESC, id"
        case .oldest: "created_at, id"
        }
        let pageSQL = "SELECT id, price_from, created_at FROM explore_listings\(Self.whereClause(conditions)) ORDER BY \(order) LIMIT ? OFFSET ?"
        values.append(.integer(Int64(query.limit)))
        values.append(.integer(Int64(offset)))
        var ids: [ListingID] = []
        var lastKey: PageKey?
        try run(pageSQL, values) { statement in
            let id = sqlite3_column_int64(statement, 0)
            ids.append(id)
            switch query.sort {
            case .priceAscending, .priceDescending:
                let unpriced = sqlite3_column_type(statement, 1) == SQLITE_NULL
                lastKey = PageKey(value: unpriced ? nil : sqlite3_column_int64(statement, 1), id: id)
            case .newest, .oldest:
                lastKey = PageKey(value: sqlite3_column_int64(statement, 2), id: id)
            }
        }

        var total: Int?
        if query.includeTotal {
            var totalValues: [SQLValue] = []
            let totalConditions = Self.conditions(query.filter, except: nil, values: &totalValues)
            try run("SELECT COUNT(*) FROM explore_listings\(Self.whereClause(totalConditions))", totalValues) {
                total = Int(sqlite3_column_int64($0, 0))
            }
        }

        var facets: [FacetCounts] = []
        for facet in FacetField.allCases where query.facets.contains(facet) {
            var facetValues: [SQLValue] = []
            var facetConditions = Self.conditions(query.filter, except: facet.ownFilter, values: &facetValues)
            var counts: [(value: FacetValue, count: Int)] = []
            switch facet {
            case .city, .area:
                let column = facet == .city ? "city" : "area"
                try run("SELECT \(column), COUNT(*) FROM explore_listings\(Self.whereClause(facetConditions)) "
                        + "GROUP BY \(column)", facetValues) { statement in
                    counts.append((.text(Self.text(statement, 0)), Int(sqlite3_column_int64(statement, 1))))
                }
            case .listingType:
                try run("SELECT listing_type, COUNT(*) FROM explore_listings\(Self.whereClause(facetConditions)) "
                        + "GROUP BY listing_type", facetValues) { statement in
                    let type = ListingType(rawValue: UInt8(sqlite3_column_int64(statement, 0))) ?? .existing
                    counts.append((.listingType(type), Int(sqlite3_column_int64(statement, 1))))
                }
            case .bedrooms:
                facetConditions.append("bedrooms IS NOT NULL")
                try run("SELECT bedrooms, COUNT(*) FROM explore_listings\(Self.whereClause(facetConditions)) "
                        + "GROUP BY bedrooms", facetValues) { statement in
                    counts.append((.bedrooms(Int32(sqlite3_column_int64(statement, 0))),
                                   Int(sqlite3_column_int64(statement, 1))))
                }
            case .priceBucket:
                // A listing counts in every bucket its [price_from, price_to] overlaps: one pass with one sum
                // per bucket (a join against a bucket table costs a nested loop per row).
                try run("SELECT \(Self.bucketSums) FROM explore_listings\(Self.whereClause(facetConditions))",
                        facetValues) { statement in
                    for bucket in PriceBuckets.lowerBounds.indices {
                        counts.append((.priceBucket(bucket), Int(sqlite3_column_int64(statement, Int32(bucket)))))
                    }
                }
            }
            facets.append(FacetOrdering.sorted(field: facet, counts))
        }
        return (Answer(ids: ids, total: total, facets: facets), lastKey)
    }

    // MARK: SQL building

    /// `SUM(CASE ...)` for every price bucket; the bounds are constants of the schema, not parameters.
    private static let bucketSums: String = {
        let bounds = PriceBuckets.lowerBounds
        return bounds.indices.map { index in
            let upper = index + 1 < bounds.count ? "price_from < \(bounds[index + 1]) AND " : ""
            return "COALESCE(SUM(CASE WHEN \(upper)price_to >= \(bounds[index]) THEN 1 ELSE 0 END), 0)"
        }.joined(separator: ", ")
    }()

    private static func whereClause(_ conditions: [String]) -> String {
        conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
    }

    private static func placeholders(_ count: Int) -> String {
        "(" + Array(repeating: "?", count: count).joined(separator: ",") + ")"
    }

    /// The filter as SQL conditions with bound values, leaving out `except` (a facet's own filter).
    private static func conditions(_ filter: SearchFilter, except: FilterField?, values: inout [SQLValue]) -> [String] {
        var conditions: [String] = []
        if except != .listingType, let types = filter.listingTypes {
            conditions.append("listing_type IN \(placeholders(types.count))")
            values += types.map(\.rawValue).sorted().map { .integer(Int64($0)) }
        }
        if except != .status, let statuses = filter.statuses {
            conditions.append("status IN \(placeholders(statuses.count))")
            values += statuses.sorted().map(SQLValue.text)
        }
        if except != .city, let cities = filter.cities {
            conditions.append("city IN \(placeholders(cities.count))")
            values += cities.sorted().map(SQLValue.text)
        }
        if except != .area, let areas = filter.areas {
            conditions.append("area IN \(placeholders(areas.count))")
            values += areas.sorted().map(SQLValue.text)
        }
        if except != .locationID, let locations = filter.locationIDs {
            conditions.append("location_id IN \(placeholders(locations.count))")
            values += locations.sorted().map(SQLValue.integer)
        }
        if except != .price, filter.priceMin != nil || filter.priceMax != nil {
            // The read model sets both ends of a range or neither, so plain columns keep the price indexes
            // usable (the reference also prices a half-set range at its one end).
            conditions.append("price_from IS NOT NULL AND price_to IS NOT NULL")
            if let maximum = filter.priceMax {
                conditions.append("price_from <= ?")
                values.append(.integer(maximum))
            }
            if let minimum = filter.priceMin {
                conditions.append("price_to >= ?")
                values.append(.integer(minimum))
            }
        }
        if except != .bedrooms {
            if let minimum = filter.bedroomsMin {
                conditions.append("bedrooms >= ?")
                values.append(.integer(Int64(minimum)))
            }
            if let maximum = filter.bedroomsMax {
                conditions.append("bedrooms <= ?")
                values.append(.integer(Int64(maximum)))
            }
        }
        if except != .bathrooms, let minimum = filter.bathroomsMin {
            conditions.append("bathrooms >= ?")
            values.append(.integer(Int64(minimum)))
        }
        if except != .createdAt {
            if let after = filter.createdAfter {
                conditions.append("created_at >= ?")
                values.append(.integer(after))
            }
            if let before = filter.createdBefore {
                conditions.append("created_at < ?")
                values.append(.integer(before))
            }
        }
        return conditions
    }

    /// Rows strictly after `key` in `sort` (unpriced rows come last in both price orders).
    private static func keysetCondition(_ key: PageKey, sort: SortOrder, values: inout [SQLValue]) -> String {
        switch sort {
        case .priceAscending, .priceDescending:
            guard let price = key.value else {
                values.append(.integer(key.id))
                return "(price_from IS NULL AND id > ?)"
            }
            values += [.integer(price), .integer(price), .integer(key.id)]
            let comparison = sort == .priceAscending ? ">" : "<"
            return "(price_from \(comparison) ? OR (price_from = ? AND id > ?) OR price_from IS NULL)"
        case .newest, .oldest:
            let created = key.value ?? 0
            values += [.integer(created), .integer(created), .integer(key.id)]
            let comparison = sort == .oldest ? ">" : "<"
            return "(created_at \(comparison) ? OR (created_at = ? AND id > ?))"
        }
    }

    // MARK: Statements

    enum SQLValue {
        case integer(Int64)
        case text(String)
        case null
    }

    private func statement(_ sql: String) throws -> OpaquePointer {
        if let cached = statements[sql] { return cached }
        var prepared: OpaquePointer?
        guard sqlite3_prepare_v2(database, sql, -1, &prepared, nil) == SQLITE_OK, let prepared else {
            throw error()
        }
        statements[sql] = prepared
        return prepared
    }

    private func bind(_ values: [SQLValue], to statement: OpaquePointer) throws {
        for (index, value) in values.enumerated() {
            let position = Int32(index + 1)
            let code: Int32 = switch value {
            case .integer(let integer): sqlite3_bind_int64(statement, position, integer)
            case .text(let text): sqlite3_bind_text(statement, position, text, -1, Self.transient)
            case .null: sqlite3_bind_null(statement, position)
            }
            guard code == SQLITE_OK else { throw error() }
        }
    }

    private func run(_ sql: String, _ values: [SQLValue], row: (OpaquePointer) -> Void) throws {
        let prepared = try statement(sql)
        defer {
            sqlite3_reset(prepared)
            sqlite3_clear_bindings(prepared)
        }
        try bind(values, to: prepared)
        while true {
            let code = sqlite3_step(prepared)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw error() }
            row(prepared)
        }
    }

    private func execute(_ sql: String) throws {
        guard sqlite3_exec(database, sql, nil, nil, nil) == SQLITE_OK else { throw error() }
    }

    private func error() -> SQLiteError {
        SQLiteError(message: String(cString: sqlite3_errmsg(database)))
    }

    private static func text(_ statement: OpaquePointer, _ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(statement, column) else { return "" }
        return String(cString: bytes)
    }
}
