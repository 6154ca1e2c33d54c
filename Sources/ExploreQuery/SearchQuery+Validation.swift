/// A query that passed validation, with its cursor decoded.
struct SearchPlan: Sendable {
    var query: SearchQuery
    var fingerprint: UInt64
    var cursor: CursorPosition?
    var offset: Int
}

extension SearchQuery {
    /// Checks every rule the core enforces and decodes the cursor.
    /// - Throws: ``QueryError`` naming the first offending field.
    public func validate() throws(QueryError) {
        _ = try validated()
    }

    func validated() throws(QueryError) -> SearchPlan {
        guard Self.limitRange.contains(limit) else {
            throw QueryError(.limitOutOfRange, "limit must be in \(Self.limitRange.lowerBound)...\(Self.limitRange.upperBound)")
        }
        guard columns.isSubset(of: .all) else { throw QueryError(.invalidValue, "columns holds unknown bits") }
        let f = filter
        if f.listingTypes?.isEmpty == true { throw QueryError(.invalidValue, "listing_type set is empty") }
        if f.statuses?.isEmpty == true { throw QueryError(.invalidValue, "status set is empty") }
        if f.cities?.isEmpty == true { throw QueryError(.invalidValue, "city set is empty") }
        if f.areas?.isEmpty == true { throw QueryError(.invalidValue, "area set is empty") }
        if f.locationIDs?.isEmpty == true { throw QueryError(.invalidValue, "location_id set is empty") }
        if let low = f.priceMin, let high = f.priceMax, low > high {
            throw QueryError(.invalidRange, "price minimum is above its maximum")
        }
        if let low = f.bedroomsMin, let high = f.bedroomsMax, low > high {
            throw QueryError(.invalidRange, "bedrooms minimum is above its maximum")
        }
        if let after = f.createdAfter, let before = f.createdBefore, after >= before {
            throw QueryError(.invalidRange, "created_after must be before created_before")
        }
        let fingerprint = Fingerprint.of(filter, sort: sort)
        var plan = SearchPlan(query: self, fingerprint: fingerprint, cursor: nil, offset: 0)
        switch start {
        case .first:
            break
        case .offset(let offset):
            guard (0...Self.maximumOffset).contains(offset) else {
                throw QueryError(.offsetOutOfRange, "offset must be in 0...\(Self.maximumOffset)")
            }
            plan.offset = offset
        case .after(let cursor):
            let position = try CursorPosition(decoding: cursor)
            guard position.sort == sort, position.fingerprint == fingerprint else {
                throw QueryError(.cursorMismatch, "cursor was made for another filter or sort")
            }
            plan.cursor = position
        }
        return plan
    }
}
