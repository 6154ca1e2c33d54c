extension SearchQuery {
    /// Parses the textual query language used by the command line and tests, e.g.
    /// `[("city", "Lisbon,Porto"), ("price", "100000..500000"), ("sort", "price_asc"), ("limit", "20")]`.
    ///
    /// Keys: `type`, `status`, `city`, `area`, `location` (comma-separated sets); `price` (`MIN..MAX`, either side
    /// may be empty); `bedrooms` (`N` or `MIN..MAX`); `bathrooms` (minimum); `created_after` / `created_before`
    /// (microseconds since the epoch or `YYYY-MM-DD`, UTC midnight); `sort` (``SortOrder`` names); `limit`;
    /// `offset`; `cursor` (``SearchCursor/base64URL``); `facets` (``FacetField`` names); `columns`
    /// (``ColumnSet/named`` names, and `id`, which every row carries anyway); `total` (`true` / `false`). Each key
    /// may appear once.
    /// - Throws: ``QueryError`` with ``QueryError/Code/unknownField`` for an unknown key, or the code of the
    ///   first invalid value.
    public init(parameters: [(key: String, value: String)]) throws(QueryError) {
        self.init()
        var seen: Set<String> = []
        for (key, value) in parameters {
            guard seen.insert(key).inserted else { throw QueryError(.invalidValue, "\(Self.short(key)) given twice") }
            switch key {
            case "type":
                filter.listingTypes = Set(try Self.list(key, value) { (item: String) throws(QueryError) -> ListingType in
                    guard let type = ListingType(name: item) else {
                        throw Self.invalid(key, item, expected: ListingType.allCases.map(\.name))
                    }
                    return type
                })
            case "status": filter.statuses = Set(try Self.list(key, value) { (item: String) throws(QueryError) in item })
            case "city": filter.cities = Set(try Self.list(key, value) { (item: String) throws(QueryError) in item })
            case "area": filter.areas = Set(try Self.list(key, value) { (item: String) throws(QueryError) in item })
            case "location":
                filter.locationIDs = Set(try Self.list(key, value) { (item: String) throws(QueryError) in
                    try Self.integer(key, item)
                })
            case "price":
                let (low, high) = try Self.range(key, value) { (item: String) throws(QueryError) in try Self.integer(key, item) }
                guard low != nil || high != nil else { throw Self.invalid(key, value, expected: ["MIN..MAX"]) }
                filter.priceMin = low
                filter.priceMax = high
            case "bedrooms":
                if value.contains("..") {
                    let (low, high) = try Self.range(key, value) { (item: String) throws(QueryError) -> Int32 in
                        try Self.int32(key, item)
                    }
                    guard low != nil || high != nil else { throw Self.invalid(key, value, expected: ["MIN..MAX"]) }
                    filter.bedroomsMin = low
                    filter.bedroomsMax = high
                } else {
                    let exact = try Self.int32(key, value)
                    filter.bedroomsMin = exact
                    filter.bedroomsMax = exact
                }
            case "bathrooms": filter.bathroomsMin = try Self.int32(key, value)
            case "created_after": filter.createdAfter = try Self.time(key, value)
            case "created_before": filter.createdBefore = try Self.time(key, value)
            case "sort":
                guard let order = SortOrder(name: value) else {
                    throw Self.invalid(key, value, expected: SortOrder.allCases.map(\.name))
                }
                sort = order
            case "limit":
                guard let number = Int(value) else { throw Self.invalid(key, value, expected: ["an integer"]) }
                limit = number
            case "offset":
                guard let number = Int(value) else { throw Self.invalid(key, value, expected: ["an integer"]) }
                guard case .first = start else { throw QueryError(.invalidValue, "offset and cursor are exclusive") }
                start = .offset(number)
            case "cursor":
                guard let cursor = SearchCursor(base64URL: value) else {
                    throw QueryError(.malformedCursor, "cursor is not base64url")
                }
                guard case .first = start else { throw QueryError(.invalidValue, "offset and cursor are exclusive") }
                start = .after(cursor)
            case "facets":
                facets = Set(try Self.list(key, value) { (item: String) throws(QueryError) -> FacetField in
                    guard let facet = FacetField(name: item) else {
                        throw Self.invalid(key, item, expected: FacetField.allCases.map(\.name))
                    }
                    return facet
                })
            case "columns":
                var set: ColumnSet = []
                for item in try Self.list(key, value, { (item: String) throws(QueryError) in item }) {
                    // Every row carries its id; naming it is allowed and changes nothing.
                    guard item != "id" else { continue }
                    guard let column = ColumnSet.named.first(where: { $0.name == item }) else {
                        throw Self.invalid(key, item, expected: ["id"] + ColumnSet.named.map(\.name))
                    }
                    set.insert(column.column)
                }
                columns = set
            case "total":
                switch value {
                case "true": includeTotal = true
                case "false": includeTotal = false
                default: throw Self.invalid(key, value, expected: ["true", "false"])
                }
            default:
                throw QueryError(.unknownField, "unknown field \(Self.short(key))")
            }
        }
        try validate()
    }

    /// Keeps messages one line and short whatever the client sent.
    private static func short(_ text: String) -> String {
        let prefix = String(text.prefix(40).filter { $0.isASCII && !$0.isNewline })
        return "'\(prefix)'"
    }

    /// `invalid city 'x': expected one of a, b`: names the key, the rejected text and what was expected.
    private static func invalid(_ key: String, _ text: String, expected: [String]) -> QueryError {
        let choices = expected.count == 1 ? expected[0] : "one of " + expected.joined(separator: ", ")
        return QueryError(.invalidValue, "invalid \(key) \(short(text)): expected \(choices)")
    }

    private static func list<T>(_ key: String, _ value: String,
                                _ parse: (String) throws(QueryError) -> T) throws(QueryError) -> [T] {
        var result: [T] = []
        for item in value.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw QueryError(.invalidValue, "empty item in \(key)") }
            result.append(try parse(String(item)))
        }
        return result
    }

    private static func range<T>(_ key: String, _ value: String,
                                 _ parse: (String) throws(QueryError) -> T) throws(QueryError) -> (T?, T?) {
        let parts = value.split(separator: "..", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw invalid(key, value, expected: ["MIN..MAX"]) }
        let low = parts[0].isEmpty ? nil : try parse(String(parts[0]))
        let high = parts[1].isEmpty ? nil : try parse(String(parts[1]))
        return (low, high)
    }

    private static func integer(_ key: String, _ text: String) throws(QueryError) -> Int64 {
        guard let value = Int64(text) else { throw invalid(key, text, expected: ["an integer"]) }
        return value
    }

    private static func int32(_ key: String, _ text: String) throws(QueryError) -> Int32 {
        guard let value = Int32(text) else { throw invalid(key, text, expected: ["a 32-bit integer"]) }
        return value
    }

    /// Microseconds since the epoch, or a `YYYY-MM-DD` date at UTC midnight.
    private static func time(_ key: String, _ text: String) throws(QueryError) -> Int64 {
        if let micros = Int64(text) { return micros }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let year = Int64(parts[0]), let month = Int64(parts[1]), let day = Int64(parts[2]),
              (1...12).contains(month), (1...daysInMonth(year: year, month: month)).contains(day)
        else { throw invalid(key, text, expected: ["YYYY-MM-DD or microseconds since 1970"]) }
        return daysFromCivil(year: year, month: month, day: day) * 86_400_000_000
    }

    private static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
