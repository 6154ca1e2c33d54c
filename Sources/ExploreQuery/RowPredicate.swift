/// A filter tested against one row's columns: the match test of sorted walks that run without a match set
/// (when the group cube shows matches are dense, a page is a short walk and the bitmaps are not needed).
struct RowPredicate {
    // The store's records (an array reference, no copy), so each test does not go through the class.
    private let records: [SlotRecord]
    private let typeMask: UInt64
    private let statuses: [Bool]?
    private let cities: [Bool]?
    private let areas: [Bool]?
    private let locations: Set<Int64>?
    private let priceMin: Int64?
    private let priceMax: Int64?
    private let bedrooms: ClosedRange<Int32>?
    private let bathroomsMin: Int32?
    private let createdAfter: Int64?
    private let createdBefore: Int64?

    init(_ filter: SearchFilter, store: ExploreStore) {
        records = store.records
        typeMask = filter.listingTypes.map { $0.reduce(0) { $0 | (1 &<< UInt64($1.rawValue)) } } ?? ~0
        statuses = filter.statuses.map { Self.allowed($0, store.statusDictionary) }
        cities = filter.cities.map { Self.allowed($0, store.cityDictionary) }
        areas = filter.areas.map { Self.allowed($0, store.areaDictionary) }
        locations = filter.locationIDs
        priceMin = filter.priceMin
        priceMax = filter.priceMax
        if filter.bedroomsMin != nil || filter.bedroomsMax != nil {
            bedrooms = (filter.bedroomsMin ?? Int32.min)...(filter.bedroomsMax ?? Int32.max)
        } else {
            bedrooms = nil
        }
        bathroomsMin = filter.bathroomsMin
        createdAfter = filter.createdAfter
        createdBefore = filter.createdBefore
    }

    private static func allowed(_ values: Set<String>, _ dictionary: StringDictionary) -> [Bool] {
        var allowed = [Bool](repeating: false, count: dictionary.values.count)
        for value in values { if let code = dictionary.code(of: value) { allowed[Int(code)] = true } }
        return allowed
    }

    @inline(__always)
    private static func contains(_ allowed: [Bool]?, _ code: UInt32) -> Bool {
        guard let allowed else { return true }
        return Int(code) < allowed.count && allowed[Int(code)]
    }

    func matches(_ slot: Int) -> Bool {
        let record = records[slot]
        let flag = SlotFlags(rawValue: record.flags)
        guard flag.contains(.live), typeMask & (1 &<< UInt64(record.type)) != 0,
              Self.contains(cities, record.city), Self.contains(statuses, record.status),
              Self.contains(areas, record.area) else { return false }
        if let locations, !locations.contains(record.locationID) { return false }
        if priceMin != nil || priceMax != nil {
            guard flag.hasPrice else { return false }
            if let priceMax, record.priceLow > priceMax { return false }
            if let priceMin, record.priceHigh < priceMin { return false }
        }
        if let bedrooms {
            guard flag.contains(.hasBedrooms), bedrooms.contains(record.bedrooms) else { return false }
        }
        if let bathroomsMin {
            guard flag.contains(.hasBathrooms), record.bathrooms >= bathroomsMin else { return false }
        }
        if let createdAfter, record.createdAt < createdAfter { return false }
        if let createdBefore, record.createdAt >= createdBefore { return false }
        return true
    }
}
