import ExploreQuery
import Testing

@Suite struct ValidationTests {
    static let index: ExploreIndex = {
        var generator = RandomListings(seed: 7, idRange: 1...200)
        return ExploreIndex(store: ExploreStore(bulk: (0..<150).map { _ in generator.listing(id: generator.id()) }))
    }()

    static func code(_ query: SearchQuery) -> QueryError.Code? {
        do {
            _ = try index.search(query)
            return nil
        } catch {
            return error.code
        }
    }

    static func code(_ parameters: [(key: String, value: String)]) -> QueryError.Code? {
        do {
            _ = try SearchQuery(parameters: parameters)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func everyCodeIsReported() {
        var query = SearchQuery()
        query.limit = 0
        #expect(Self.code(query) == .limitOutOfRange)
        query.limit = 1001
        #expect(Self.code(query) == .limitOutOfRange)
        query.limit = 1000
        #expect(Self.code(query) == nil)

        query = SearchQuery(start: .offset(-1))
        #expect(Self.code(query) == .offsetOutOfRange)
        query.start = .offset(SearchQuery.maximumOffset + 1)
        #expect(Self.code(query) == .offsetOutOfRange)
        query.start = .offset(SearchQuery.maximumOffset)
        #expect(Self.code(query) == nil)

        var filter = SearchFilter()
        filter.priceMin = 10
        filter.priceMax = 9
        #expect(Self.code(SearchQuery(filter: filter)) == .invalidRange)
        filter = SearchFilter()
        filter.bedroomsMin = 3
        filter.bedroomsMax = 2
        #expect(Self.code(SearchQuery(filter: filter)) == .invalidRange)
        filter = SearchFilter()
        filter.createdAfter = 5
        filter.createdBefore = 5
        #expect(Self.code(SearchQuery(filter: filter)) == .invalidRange)

        for empty in 0..<5 {
            filter = SearchFilter()
            switch empty {
            case 0: filter.listingTypes = []
            case 1: filter.statuses = []
            case 2: filter.cities = []
            case 3: filter.areas = []
            default: filter.locationIDs = []
            }
            #expect(Self.code(SearchQuery(filter: filter)) == .invalidValue)
        }
        #expect(Self.code(SearchQuery(columns: ColumnSet(rawValue: 1 << 15))) == .invalidValue)

        #expect(Self.code(SearchQuery(start: .after(SearchCursor(bytes: [1, 2, 3])))) == .malformedCursor)
        #expect(Self.code([("colour", "red")]) == .unknownField)
    }

    @Test func cursorIsBoundToFilterAndSort() throws {
        var filter = SearchFilter()
        filter.cities = ["Lisbon", "Porto"]
        let first = try Self.index.search(SearchQuery(filter: filter, sort: .priceAscending, limit: 2))
        let cursor = try #require(first.nextCursor)
        #expect(Self.code(SearchQuery(filter: filter, sort: .priceAscending, limit: 2, start: .after(cursor))) == nil)
        #expect(Self.code(SearchQuery(filter: filter, sort: .priceDescending, start: .after(cursor))) == .cursorMismatch)
        var other = filter
        other.cities = ["Lisbon"]
        #expect(Self.code(SearchQuery(filter: other, sort: .priceAscending, start: .after(cursor))) == .cursorMismatch)
        // The same set in another insertion order is the same filter.
        var reordered = SearchFilter()
        reordered.cities = ["Porto"]
        reordered.cities?.insert("Lisbon")
        #expect(Self.code(SearchQuery(filter: reordered, sort: .priceAscending, start: .after(cursor))) == nil)
        // Round trip through base64url.
        #expect(SearchCursor(base64URL: cursor.base64URL) == cursor)
    }

    @Test func garbageCursorsAreRejectedNeverTrusted() throws {
        let result = try Self.index.search(SearchQuery(sort: .newest, limit: 3))
        let valid = try #require(result.nextCursor)
        var random = SeededRandom(seed: 42)
        for round in 0..<5000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = valid.bytes
                let flips = Int.random(in: 1...3, using: &random)
                for _ in 0..<flips {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
                }
            } else {
                bytes = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            let code = Self.code(SearchQuery(sort: .newest, limit: 3, start: .after(SearchCursor(bytes: bytes))))
            #expect(code == .malformedCursor)
        }
    }

    @Test func base64URLRoundTripsAndRejectsJunk() {
        var random = SeededRandom(seed: 3)
        for length in 0..<40 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let text = SearchCursor(bytes: bytes).base64URL
            #expect(!text.contains("+") && !text.contains("/") && !text.contains("="))
            #expect(SearchCursor(base64URL: text)?.bytes == bytes)
        }
        #expect(SearchCursor(base64URL: "ab+c") == nil)
        #expect(SearchCursor(base64URL: "a") == nil)
        #expect(SearchCursor(base64URL: "Zm9v!") == nil)
        #expect(SearchCursor(base64URL: "Zg==")?.bytes == [0x66])
    }

    @Test func parametersParse() throws {
        let query = try SearchQuery(parameters: [
            ("type", "development,existing"), ("status", "active"), ("city", "Lisbon,Porto"), ("area", "Foz"),
            ("location", "3,4"), ("price", "100000..500000"), ("bedrooms", "2..4"), ("bathrooms", "2"),
            ("created_after", "2024-02-29"), ("created_before", "1800000000000000"), ("sort", "price_desc"),
            ("limit", "50"), ("offset", "20"), ("facets", "city,price"), ("columns", "id,title,city"),
            ("total", "false"),
        ])
        var filter = SearchFilter()
        filter.listingTypes = [.development, .existing]
        filter.statuses = ["active"]
        filter.cities = ["Lisbon", "Porto"]
        filter.areas = ["Foz"]
        filter.locationIDs = [3, 4]
        filter.priceMin = 100_000
        filter.priceMax = 500_000
        filter.bedroomsMin = 2
        filter.bedroomsMax = 4
        filter.bathroomsMin = 2
        filter.createdAfter = 1_709_164_800_000_000
        filter.createdBefore = 1_800_000_000_000_000
        #expect(query == SearchQuery(filter: filter, sort: .priceDescending, limit: 50, start: .offset(20),
                                     includeTotal: false, facets: [.city, .priceBucket], columns: [.title, .city]))

        let open = try SearchQuery(parameters: [("price", "..700"), ("bedrooms", "3")])
        #expect(open.filter.priceMin == nil && open.filter.priceMax == 700)
        #expect(open.filter.bedroomsMin == 3 && open.filter.bedroomsMax == 3)
        #expect(try SearchQuery(parameters: [("price", "5..")]).filter.priceMin == 5)
        #expect(try SearchQuery(parameters: [("created_after", "1970-01-02")]).filter.createdAfter == 86_400_000_000)

        let page = try Self.index.search(SearchQuery(sort: .oldest, limit: 2))
        let cursor = try #require(page.nextCursor)
        let next = try SearchQuery(parameters: [("sort", "oldest"), ("limit", "2"), ("cursor", cursor.base64URL)])
        #expect(next.start == .after(cursor))
    }

    /// A rejected value is quoted in the message with what was expected, so a user can fix it without the docs.
    @Test func rejectedValuesAreNamedWithTheChoices() {
        func message(_ key: String, _ value: String) -> String? {
            do {
                _ = try SearchQuery(parameters: [(key, value)])
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message("sort", "cheapest")
                    == "invalid sort 'cheapest': expected one of price_asc, price_desc, newest, oldest")
        #expect(message("type", "development,castle")
                    == "invalid type 'castle': expected one of development, existing")
        let columns = message("columns", "title,colour")
        #expect(columns?.hasPrefix("invalid columns 'colour': expected one of id, listing_type, status, title") == true)
        #expect(message("limit", "x") == "invalid limit 'x': expected an integer")
        #expect(message("price", "1..2..3") == "invalid price '2..3': expected an integer")
        #expect(message("created_after", "yesterday")
                    == "invalid created_after 'yesterday': expected YYYY-MM-DD or microseconds since 1970")
    }

    @Test(arguments: [
        ([("nope", "1")], QueryError.Code.unknownField),
        ([("type", "castle")], .invalidValue),
        ([("city", "Lisbon,,Porto")], .invalidValue),
        ([("city", "")], .invalidValue),
        ([("price", "abc..5")], .invalidValue),
        ([("price", "..")], .invalidValue),
        ([("price", "9..1")], .invalidRange),
        ([("bedrooms", "4..2")], .invalidRange),
        ([("created_after", "2024-02-30")], .invalidValue),
        ([("created_after", "2024-03-01"), ("created_before", "2024-03-01")], .invalidRange),
        ([("sort", "cheapest")], .invalidValue),
        ([("limit", "0")], .limitOutOfRange),
        ([("limit", "x")], .invalidValue),
        ([("offset", "10001")], .offsetOutOfRange),
        ([("cursor", "!!")], .malformedCursor),
        ([("cursor", "AAAA")], .malformedCursor),
        ([("facets", "colour")], .invalidValue),
        ([("columns", "colour")], .invalidValue),
        ([("total", "yes")], .invalidValue),
        ([("city", "a"), ("city", "b")], .invalidValue),
    ] as [([(String, String)], QueryError.Code)])
    func badParametersAreRejected(parameters: [(String, String)], code: QueryError.Code) {
        #expect(Self.code(parameters.map { (key: $0.0, value: $0.1) }) == code)
    }
}
