import ExploreQuery

/// The pages one engine returned for one mix item, and how long each took.
struct ItemOutcome {
    var pages: [Answer] = []
    var nanoseconds: [UInt64] = []
    /// Set when the engine refused or failed the query.
    var failure: String?

    var totalNanoseconds: UInt64 { nanoseconds.reduce(0, +) }
}

/// Runs mix items against each engine, following deep-paging chains the way that engine pages: the cache
/// with its opaque cursor, the reference and SQLite with the last row's sort key.
enum MixRunner {
    /// The query for the pages after the first of a chain: no total and no facets, as a "load more" request.
    static func followUp(_ query: SearchQuery) -> SearchQuery {
        var next = query
        next.includeTotal = false
        next.facets = []
        return next
    }

    static func runCache(_ item: MixItem, on index: ExploreIndex, keepAnswers: Bool) -> ItemOutcome {
        var outcome = ItemOutcome()
        var query = item.query
        for page in 0..<item.pages {
            let started = monotonicNanoseconds()
            let result: SearchResult
            do {
                result = try index.search(query)
            } catch {
                outcome.failure = "cache refused the query: \(error)"
                return outcome
            }
            outcome.nanoseconds.append(monotonicNanoseconds() - started)
            if keepAnswers {
                outcome.pages.append(Answer(ids: result.rows.map(\.id), total: result.total, facets: result.facets))
            }
            guard page + 1 < item.pages, result.rows.count == query.limit, let cursor = result.nextCursor else {
                break
            }
            query = followUp(query)
            query.start = .after(cursor)
        }
        return outcome
    }

    /// Only counts pages; the loop each thread of the throughput run executes.
    static func runCacheCountingPages(_ item: MixItem, on index: ExploreIndex) -> Int {
        var query = item.query
        var pages = 0
        for page in 0..<item.pages {
            guard let result = try? index.search(query) else { return pages }
            pages += 1
            guard page + 1 < item.pages, result.rows.count == query.limit, let cursor = result.nextCursor else {
                break
            }
            query = followUp(query)
            query.start = .after(cursor)
        }
        return pages
    }

    static func runReference(_ item: MixItem, on reference: ReferenceExplore) -> ItemOutcome {
        var outcome = ItemOutcome()
        var query = item.query
        var after: PageKey?
        for page in 0..<item.pages {
            let started = monotonicNanoseconds()
            let answer = reference.search(query, after: after)
            outcome.nanoseconds.append(monotonicNanoseconds() - started)
            outcome.pages.append(answer)
            guard page + 1 < item.pages, answer.ids.count == query.limit, let last = answer.ids.last,
                  let row = reference.row(id: last) else { break }
            after = PageKey(row: row, sort: query.sort)
            query = followUp(query)
            query.start = .first
        }
        return outcome
    }

    static func runSQLite(_ item: MixItem, on sqlite: SQLiteExplore) -> ItemOutcome {
        var outcome = ItemOutcome()
        var query = item.query
        var after: PageKey?
        for page in 0..<item.pages {
            let started = monotonicNanoseconds()
            let answer: Answer
            let lastKey: PageKey?
            do {
                (answer, lastKey) = try sqlite.search(query, after: after)
            } catch {
                outcome.failure = "\(error)"
                return outcome
            }
            outcome.nanoseconds.append(monotonicNanoseconds() - started)
            outcome.pages.append(answer)
            guard page + 1 < item.pages, answer.ids.count == query.limit, let lastKey else { break }
            after = lastKey
            query = followUp(query)
            query.start = .first
        }
        return outcome
    }
}

extension SearchQuery {
    /// A compact, reproducible description of the query for mismatch reports.
    var benchDescription: String {
        var parts: [String] = []
        let filter = self.filter
        if let types = filter.listingTypes { parts.append("listing_type=\(types.map(\.name).sorted())") }
        if let statuses = filter.statuses { parts.append("status=\(statuses.sorted())") }
        if let cities = filter.cities { parts.append("city=\(cities.sorted())") }
        if let areas = filter.areas { parts.append("area=\(areas.sorted())") }
        if let locations = filter.locationIDs { parts.append("location_id=\(locations.sorted())") }
        if filter.priceMin != nil || filter.priceMax != nil {
            parts.append("price=\(filter.priceMin.map(String.init) ?? "")..\(filter.priceMax.map(String.init) ?? "")")
        }
        if filter.bedroomsMin != nil || filter.bedroomsMax != nil {
            parts.append("bedrooms=\(filter.bedroomsMin.map(String.init) ?? "")..\(filter.bedroomsMax.map(String.init) ?? "")")
        }
        if let bathrooms = filter.bathroomsMin { parts.append("bathrooms_min=\(bathrooms)") }
        if filter.createdAfter != nil || filter.createdBefore != nil {
            parts.append("created=\(filter.createdAfter.map(String.init) ?? "")..\(filter.createdBefore.map(String.init) ?? "")")
        }
        parts.append("sort=\(sort.name)")
        parts.append("limit=\(limit)")
        switch start {
        case .first: break
        case .offset(let offset): parts.append("offset=\(offset)")
        case .after: parts.append("after=<cursor>")
        }
        parts.append("total=\(includeTotal)")
        if !facets.isEmpty { parts.append("facets=\(facets.map(\.name).sorted())") }
        return parts.joined(separator: " ")
    }
}
