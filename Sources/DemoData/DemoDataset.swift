public import ExploreQuery

/// A location row: one area of one city.
public struct DemoLocation: Sendable, Hashable {
    public var id: Int64
    public var city: String
    public var area: String
}

/// The development-specific row of a listing.
public struct DemoDevelopment: Sendable, Hashable {
    public var priceFrom: Int64
    public var priceTo: Int64
    public var unitsTotal: Int32
    public var completionYear: Int32
    public var developerOrganizationID: Int64
}

/// The existing-property-specific row of a listing.
public struct DemoExistingProperty: Sendable, Hashable {
    public var price: Int64
    public var bedrooms: Int32
    public var bathrooms: Int32
    public var floorAreaSquareMeters: Int32
}

/// One media row of a listing.
public struct DemoMedia: Sendable, Hashable {
    public var url: String
    public var isPrimary: Bool
    public var position: Int32
}

/// One listing with its domain rows, as seeded into the base tables.
public struct DemoListing: Sendable, Hashable {
    public var id: Int64
    public var type: ListingType
    /// `published`, `active`, or one of the statuses the read model excludes (`draft`, `archived`, `sold`).
    public var status: String
    public var title: String
    public var locationID: Int64
    public var ownerUserID: Int64
    /// Microseconds since the Unix epoch.
    public var createdAt: Int64
    public var development: DemoDevelopment?
    public var existing: DemoExistingProperty?
    public var media: [DemoMedia]

    /// Whether the read model shows this listing.
    public var isVisibleInExplore: Bool { status == "published" || status == "active" }
}

/// A wizard draft, not yet promoted into the final tables.
public struct DemoDraft: Sendable, Hashable {
    public var id: Int64
    public var ownerUserID: Int64
    public var type: ListingType
    /// 1…5; the wizard's last completed step.
    public var step: Int32
    /// `in_progress`, `ready` or `abandoned`.
    public var status: String
    /// The wizard's JSON payload.
    public var payloadJSON: String
}

/// A deterministic, realistic demo data set: the same `(listings, seed)` always yields the same rows.
///
/// Distributions: cities are Zipf-distributed (a few big cities hold most listings), each city has many areas
/// (more for bigger cities); about 30 % developments with price ranges and 70 % existing properties with
/// bedrooms and bathrooms; about 92 % have a primary image; about 8 % are not published; one draft per 50
/// listings. Prices are log-normal around a per-city level.
public struct DemoDataset: Sendable {
    /// Number of listings (ids `1...listingCount`).
    public let listingCount: Int
    public let seed: UInt64
    public let locations: [DemoLocation]
    /// Users own listings and drafts (ids `1...userCount`).
    public let userCount: Int
    /// Organizations build developments (ids `1...organizationCount`).
    public let organizationCount: Int
    /// Drafts (ids `1...draftCount`).
    public let draftCount: Int

    private let locationCumulativeWeights: [Double]
    private let locationPriceLevel: [Double]

    /// Creates the data set description; rows are generated on demand.
    /// - Parameters:
    ///   - listings: number of listings, ≥ 0.
    ///   - seed: selects one of many equally realistic data sets.
    public init(listings: Int, seed: UInt64 = 1) {
        precondition(listings >= 0, "listing count must not be negative")
        listingCount = listings
        self.seed = seed
        userCount = max(1, listings / 20)
        organizationCount = max(1, listings / 500)
        draftCount = listings / 50

        var locations: [DemoLocation] = []
        var weights: [Double] = []
        var levels: [Double] = []
        var random = DemoRandom(seed: seed, stream: 0xC17E5)
        for (rank, city) in Self.cityNames.enumerated() {
            // Zipf with exponent 1: the k-th city gets weight 1/k, split over its areas.
            let cityWeight = 1.0 / Double(rank + 1)
            let areaCount = max(4, 160 / (rank + 1))
            let cityLevel = 120_000 + random.unit() * 480_000
            for areaIndex in 0..<areaCount {
                let stem = Self.areaStems[areaIndex % Self.areaStems.count]
                let round = areaIndex / Self.areaStems.count
                let area = round == 0 ? stem : "\(stem) \(round + 1)"
                locations.append(DemoLocation(id: Int64(locations.count + 1), city: city, area: area))
                // Within a city, areas are skewed too (a few central areas are popular).
                weights.append(cityWeight / Double(areaCount) * (2.0 / Double(areaIndex % 8 + 1)))
                levels.append(cityLevel * (0.6 + random.unit() * 0.9))
            }
        }
        self.locations = locations
        var running = 0.0
        locationCumulativeWeights = weights.map { running += $0; return running }
        locationPriceLevel = levels
    }

    /// The listing with id `index + 1`.
    public func listing(at index: Int) -> DemoListing {
        precondition(index >= 0 && index < listingCount, "listing index out of range")
        var random = DemoRandom(seed: seed, stream: UInt64(index) &+ 1)
        let id = Int64(index + 1)
        let locationIndex = random.pick(cumulative: locationCumulativeWeights)
        let location = locations[locationIndex]
        let level = locationPriceLevel[locationIndex]
        let type: ListingType = random.unit() < 0.3 ? .development : .existing
        let statusRoll = random.unit()
        let status = statusRoll < 0.55 ? "published"
            : statusRoll < 0.92 ? "active"
            : statusRoll < 0.96 ? "draft"
            : statusRoll < 0.98 ? "archived" : "sold"
        // Three years of history ending at 2026-01-01T00:00:00Z.
        let end: Int64 = 1_767_225_600_000_000
        let span: Int64 = 3 * 365 * 86_400 * 1_000_000
        let createdAt = end - Int64(random.unit() * Double(span))
        let ownerUserID = Int64(random.next() % UInt64(userCount)) + 1

        var development: DemoDevelopment?
        var existing: DemoExistingProperty?
        let title: String
        switch type {
        case .development:
            let from = Self.roundedPrice(level * 1.2 * _exp(random.normal() * 0.45))
            let to = Self.roundedPrice(Double(from) * (1.1 + random.unit() * 1.4))
            let units = Int32(8 + random.next() % 240)
            development = DemoDevelopment(
                priceFrom: from, priceTo: max(from, to), unitsTotal: units,
                completionYear: Int32(2025 + random.next() % 5),
                developerOrganizationID: Int64(random.next() % UInt64(organizationCount)) + 1)
            let name = Self.developmentNames[Int(random.next() % UInt64(Self.developmentNames.count))]
            title = "\(name) \(location.area), \(units) new homes in \(location.city)"
        case .existing:
            let bedrooms = Int32(random.pick(cumulative: Self.bedroomCumulativeWeights))
            let bathrooms = max(1, min(bedrooms, Int32(1 + random.next() % 3)))
            let floorArea = Int32(28 + Double(bedrooms) * 24 + random.unit() * 40)
            let price = Self.roundedPrice(level * (0.55 + 0.3 * Double(bedrooms)) * _exp(random.normal() * 0.5))
            existing = DemoExistingProperty(
                price: price, bedrooms: bedrooms, bathrooms: bathrooms, floorAreaSquareMeters: floorArea)
            let kind = Self.propertyKinds[Int(random.next() % UInt64(Self.propertyKinds.count))]
            title = bedrooms == 0
                ? "Studio \(kind) in \(location.area), \(location.city)"
                : "\(bedrooms)-bedroom \(kind) in \(location.area), \(location.city)"
        }

        var media: [DemoMedia] = []
        let hasPrimary = random.unit() < 0.92
        let extra = Int(random.next() % 3)
        for position in 0..<(extra + (hasPrimary ? 1 : 0)) {
            let key = String(random.next() & 0xFFFF_FFFF, radix: 16)
            media.append(DemoMedia(
                url: "https://images.example.com/l/\(id)/\(key).jpg",
                isPrimary: hasPrimary && position == 0, position: Int32(position)))
        }

        return DemoListing(
            id: id, type: type, status: status, title: title, locationID: location.id,
            ownerUserID: ownerUserID, createdAt: createdAt, development: development, existing: existing,
            media: media)
    }

    /// Calls `body` with every listing in id order.
    public func forEachListing(_ body: (DemoListing) throws -> Void) rethrows {
        for index in 0..<listingCount {
            try body(listing(at: index))
        }
    }

    /// The draft with id `index + 1`.
    public func draft(at index: Int) -> DemoDraft {
        precondition(index >= 0 && index < draftCount, "draft index out of range")
        var random = DemoRandom(seed: seed, stream: 0xD4AF_7000_0000 &+ UInt64(index))
        let type: ListingType = random.unit() < 0.3 ? .development : .existing
        let step = Int32(1 + random.next() % 5)
        let statusRoll = random.unit()
        let status = statusRoll < 0.7 ? "in_progress" : statusRoll < 0.9 ? "ready" : "abandoned"
        let location = locations[random.pick(cumulative: locationCumulativeWeights)]
        let level = locationPriceLevel[Int(location.id - 1)]
        let price = Self.roundedPrice(level * _exp(random.normal() * 0.5))
        var fields = [
            "\"type\":\"\(type.name)\"",
            "\"location_id\":\(location.id)",
            "\"title\":\"\(type == .development ? "New homes" : "Home") in \(location.area), \(location.city)\"",
        ]
        if step >= 3 {
            switch type {
            case .development:
                fields.append("\"price_from\":\(price),\"price_to\":\(price + price / 2),\"units_total\":40")
            case .existing:
                let bedrooms = 1 + random.next() % 4
                fields.append("\"price\":\(price),\"bedrooms\":\(bedrooms),\"bathrooms\":\(max(1, bedrooms - 1))")
            }
        }
        if step >= 4 {
            fields.append("\"images\":[\"https://images.example.com/d/\(index + 1)/1.jpg\"]")
        }
        return DemoDraft(
            id: Int64(index + 1), ownerUserID: Int64(random.next() % UInt64(userCount)) + 1, type: type,
            step: step, status: status, payloadJSON: "{" + fields.joined(separator: ",") + "}")
    }

    /// The read-model row for a listing, exactly as the canonical `explore_listings` definition derives it;
    /// `nil` when the read model excludes the listing.
    public func exploreRow(for listing: DemoListing) -> ExploreListing? {
        guard listing.isVisibleInExplore else { return nil }
        let location = locations[Int(listing.locationID - 1)]
        return ExploreListing(
            id: listing.id, listingType: listing.type, status: listing.status, title: listing.title,
            locationID: listing.locationID,
            priceFrom: listing.development?.priceFrom ?? listing.existing?.price,
            priceTo: listing.development?.priceTo ?? listing.existing?.price,
            bedrooms: listing.existing?.bedrooms, bathrooms: listing.existing?.bathrooms,
            primaryImageURL: listing.media.first(where: \.isPrimary)?.url,
            city: location.city, area: location.area, createdAt: listing.createdAt)
    }

    /// Every read-model row, in id order.
    public func exploreRows() -> [ExploreListing] {
        var rows: [ExploreListing] = []
        rows.reserveCapacity(listingCount)
        forEachListing { listing in
            if let row = exploreRow(for: listing) { rows.append(row) }
        }
        return rows
    }

    private static func roundedPrice(_ value: Double) -> Int64 {
        max(10_000, Int64(value / 1_000) * 1_000)
    }

    private static let bedroomCumulativeWeights: [Double] = {
        var running = 0.0
        return [5.0, 20, 35, 25, 10, 4, 1].map { running += $0; return running }
    }()

    static let cityNames = [
        "Lisbon", "Porto", "Madrid", "Barcelona", "Valencia", "Seville", "Braga", "Coimbra", "Faro", "Malaga",
        "Bilbao", "Zaragoza", "Aveiro", "Funchal", "Granada", "Alicante", "Cordoba", "Murcia", "Palma", "Vigo",
        "Gijon", "Evora", "Leiria", "Setubal", "Cascais", "Sintra", "Almada", "Guimaraes", "Viseu", "Salamanca",
        "Toledo", "Cadiz", "Girona", "Tarragona", "Pamplona", "Santander", "Oviedo", "Burgos", "Leon", "Caceres",
        "Badajoz", "Huelva", "Almeria", "Jaen", "Lagos", "Tavira", "Portimao", "Albufeira", "Viana do Castelo",
        "Braganca", "Castelo Branco", "Santarem", "Tomar", "Nazare", "Ericeira", "Peniche", "Obidos", "Elvas",
        "Lugo", "Ourense",
    ]

    static let areaStems = [
        "Centro", "Old Town", "Riverside", "North Hills", "Harbour", "University", "Station", "Market",
        "Parkside", "West End", "East Gate", "Cathedral", "Beachfront", "Hilltop", "Garden District",
        "Business Park", "Marina", "Castle View", "Vineyards", "Lakeside", "South Bank", "Arts Quarter",
        "Old Mill", "Green Valley", "Sunset Heights", "Airport", "Stadium", "Boulevard", "Fishermen's Wharf",
        "Olive Grove",
    ]

    static let propertyKinds = ["apartment", "house", "townhouse", "penthouse", "villa", "duplex", "loft"]

    static let developmentNames = [
        "Aurora", "Atlantico", "Jardins", "Miradouro", "Horizonte", "Terraços", "Alameda", "Quinta", "Mar Azul",
        "Solaris",
    ]
}
