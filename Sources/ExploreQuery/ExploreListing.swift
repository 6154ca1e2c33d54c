/// A listing's identifier, shared with `listings.id` in PostgreSQL.
public typealias ListingID = Int64

/// The two kinds of listing the portal knows; stored in `listings.type`.
public enum ListingType: UInt8, Sendable, Hashable, CaseIterable, Codable {
    case development = 0
    case existing = 1

    /// The spelling used in SQL, on the command line and in JSON.
    public var name: String {
        switch self {
        case .development: "development"
        case .existing: "existing"
        }
    }

    /// Parses the SQL / command-line spelling; `nil` for anything else.
    public init?(name: String) {
        switch name {
        case "development": self = .development
        case "existing": self = .existing
        default: return nil
        }
    }
}

/// One row of the `explore_listings` read model.
///
/// Nullability follows the read model: developments have no bedrooms or bathrooms, a listing may have no
/// primary image, and a listing whose type-specific row is missing has no price.
public struct ExploreListing: Sendable, Hashable, Codable {
    public var id: ListingID
    public var listingType: ListingType
    /// `published` or `active` in the read model; kept as text because the base table's set may grow.
    public var status: String
    public var title: String
    public var locationID: Int64
    /// Lower end of the price range; equal to `priceTo` for existing properties. Whole currency units.
    public var priceFrom: Int64?
    /// Upper end of the price range. Whole currency units.
    public var priceTo: Int64?
    public var bedrooms: Int32?
    public var bathrooms: Int32?
    public var primaryImageURL: String?
    public var city: String
    public var area: String
    /// Creation time in microseconds since the Unix epoch (PostgreSQL `timestamptz` precision).
    public var createdAt: Int64

    /// Creates a row; every field is given explicitly so call sites read like the read model.
    public init(
        id: ListingID, listingType: ListingType, status: String, title: String, locationID: Int64,
        priceFrom: Int64?, priceTo: Int64?, bedrooms: Int32?, bathrooms: Int32?,
        primaryImageURL: String?, city: String, area: String, createdAt: Int64
    ) {
        self.id = id
        self.listingType = listingType
        self.status = status
        self.title = title
        self.locationID = locationID
        self.priceFrom = priceFrom
        self.priceTo = priceTo
        self.bedrooms = bedrooms
        self.bathrooms = bathrooms
        self.primaryImageURL = primaryImageURL
        self.city = city
        self.area = area
        self.createdAt = createdAt
    }
}

/// One change to the cache: the row as it is now, or its removal from the read model.
public enum ListingChange: Sendable, Hashable {
    case upsert(ExploreListing)
    /// ``upsert(_:)`` of a row whose text (status, title, image URL, city and area) the caller knows to be the
    /// listing's text already, as when only its prices or rooms were recomputed: the store keeps the text it
    /// holds instead of comparing the row's with it, a quarter of a price edit's cost. It does not check the
    /// claim. A listing it does not hold, or one an earlier change of the same batch touched, is upserted whole.
    case upsertKeepingText(ExploreListing)
    case delete(ListingID)

    /// The listing this change is about.
    public var id: ListingID {
        // One case per pattern: a pattern binding one variable in two cases copies the row (retaining its
        // strings) where a single case reads the field in place.
        switch self {
        case .upsert(let row): row.id
        case .upsertKeepingText(let row): row.id
        case .delete(let id): id
        }
    }

    /// The row an upsert brings; `nil` for a delete.
    public var row: ExploreListing? {
        switch self {
        case .upsert(let row), .upsertKeepingText(let row): row
        case .delete: nil
        }
    }
}

/// Changes applied together: a reader sees all of them or none.
public struct ListingChangeBatch: Sendable, Hashable {
    public var changes: [ListingChange]

    public init(_ changes: [ListingChange]) {
        self.changes = changes
    }
}
