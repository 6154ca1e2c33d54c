/// A filter tested against one row's columns: the match test of sorted walks that run without a match set
/// (when the group cube shows matches are dense, a page is a short walk and the bitmaps are not needed).
struct RowPredicate {
    // The store's columns (array references, no copy), so each test does not go through the class.
    private let flags: [UInt8]
    private let types: [UInt8]
    private let statusCodes: [UInt32]
    private let cityCodes: [UInt32]
    private let areaCodes: [UInt32]
    private let locationIDs: [Int64]
    private let priceLow: [Int64]
    private let priceHigh: [Int64]
    private let bedroomCounts: [Int32]
    private let bathroomCounts: [Int32]
    private let createdAt: [Int64]
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
        flags = store.flags
        types = store.types
        statusCodes = store.statusCodes
        cityCodes = store.cityCodes
        areaCodes = store.areaCodes
        locationIDs = store.locationIDs
        priceLow = store.priceLow
        priceHigh = store.priceHigh
        bedroomCounts = store.bedrooms
        bathroomCounts = store.bathrooms
        createdAt = store.createdAt
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
        let flag = SlotFlags(rawValue: flags[slot])
        guard flag.contains(.live), typeMask & (1 &<< UInt64(types[slot])) != 0,
              Self.contains(cities, cityCodes[slot]), Self.contains(statuses, statusCodes[slot]),
              Self.contains(areas, areaCodes[slot]) else { return false }
        if let locations, !locations.contains(locationIDs[slot]) { return false }
        if priceMin != nil || priceMax != nil {
            guard flag.hasPrice else { return false }
            if let priceMax, priceLow[slot] > priceMax { return false }
            if let priceMin, priceHigh[slot] < priceMin { return false }
        }
        if let bedrooms {
            guard flag.contains(.hasBedrooms), bedrooms.contains(bedroomCounts[slot]) else { return false }
        }
        if let bathroomsMin {
            guard flag.contains(.hasBathrooms), bathroomCounts[slot] >= bathroomsMin else { return false }
        }
        if let createdAfter, createdAt[slot] < createdAfter { return false }
        if let createdBefore, createdAt[slot] >= createdBefore { return false }
        return true
    }
}
