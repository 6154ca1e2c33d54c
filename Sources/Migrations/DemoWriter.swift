import DemoData
public import Postgres

/// Keeps changing the demo database the way a portal's users do, so the projector has something to follow:
/// price edits, media uploads, status flips and, now and then, a location renamed (which touches every listing
/// at that location). Each change is one small transaction on the base tables; the outbox triggers do the rest.
///
/// Deterministic for a seed and a database: the same seed picks the same listings in the same order.
public struct DemoWriter: Sendable {
    /// The kinds of change, with their share of the mix.
    public enum Change: String, Sendable, Hashable, CaseIterable {
        /// A listing's price moves by up to ±10 % (the existing property's price or the development's range).
        case priceEdit = "price_edit"
        /// A photo is added to a listing; half the time it becomes the primary image shown in Explore.
        case mediaUpload = "media_upload"
        /// A listing flips between published and active, is archived (leaves Explore) or comes back.
        case statusFlip = "status_flip"
        /// A location's area is renamed (or renamed back): every listing there changes at once.
        case locationRename = "location_rename"

        /// Out of 1,000 changes.
        var weight: UInt64 {
            switch self {
            case .priceEdit: 550
            case .mediaUpload: 250
            case .statusFlip: 190
            case .locationRename: 10
            }
        }
    }

    /// What a run did.
    public struct Summary: Sendable, Hashable {
        /// Changes committed, by kind.
        public var committed: [Change: Int] = [:]
        /// Changes that found nothing to change (e.g. a deleted listing) and committed nothing.
        public var skipped = 0
        /// Changes that failed (the failure is rolled back; the writer goes on).
        public var failed = 0

        public init() {}

        /// All committed changes.
        public var total: Int { committed.values.reduce(0, +) }
    }

    private var random: SplitMix64
    private let listingIDs: ClosedRange<Int64>
    private let locationIDs: ClosedRange<Int64>
    private var mediaCounter: UInt64 = 0

    /// Suffix toggled by a location rename.
    static let renameSuffix = " (renamed)"

    /// Reads the id ranges of listings and locations.
    /// - Throws: `PostgresError`; `.server` with a message when the database holds no listings (seed it first).
    public init(connection: PostgresConnection, seed: UInt64) throws(PostgresError) {
        let result = try connection.query("""
            SELECT (SELECT min(id) FROM property.listings), (SELECT max(id) FROM property.listings),
                   (SELECT min(id) FROM property.locations), (SELECT max(id) FROM property.locations)
            """)
        guard let row = result.first, let lowListing = row[0].flatMap({ Int64($0) }),
              let highListing = row[1].flatMap({ Int64($0) }), let lowLocation = row[2].flatMap({ Int64($0) }),
              let highLocation = row[3].flatMap({ Int64($0) })
        else {
            throw PostgresError(code: .server, message: "the database has no listings to change; run "
                + "explore-projector seed-demo first")
        }
        random = SplitMix64(seed: seed)
        listingIDs = lowListing...highListing
        locationIDs = lowLocation...highLocation
    }

    /// Picks the next change and commits it on `connection`; returns its kind and whether it changed a row.
    /// - Throws: `PostgresError` when the change failed (it is rolled back).
    public mutating func step(on connection: PostgresConnection) throws(PostgresError) -> (Change, Bool) {
        let change = nextChange()
        let changed: Bool
        switch change {
        case .priceEdit: changed = try editPrice(on: connection)
        case .mediaUpload: changed = try uploadMedia(on: connection)
        case .statusFlip: changed = try flipStatus(on: connection)
        case .locationRename: changed = try renameLocation(on: connection)
        }
        return (change, changed)
    }

    private mutating func nextChange() -> Change {
        var ticket = random.next() % 1_000
        for change in Change.allCases {
            if ticket < change.weight { return change }
            ticket -= change.weight
        }
        return .priceEdit
    }

    private mutating func listingID() -> Int64 { Int64.random(in: listingIDs, using: &random) }

    private mutating func editPrice(on connection: PostgresConnection) throws(PostgresError) -> Bool {
        let id = listingID()
        // -10 % … +10 % in steps of 0.1 %, never 0 (a no-op edit would teach the demo nothing).
        var permille = Int64.random(in: -100...99, using: &random)
        if permille >= 0 { permille += 1 }
        let factor = "\(1 + Double(permille) / 1_000)"
        let result = try connection.query("""
            WITH existing AS (
                UPDATE property.existing_properties SET price = GREATEST(1000, round(price * $2::numeric))::bigint
                WHERE listing_id = $1 RETURNING 1),
            development AS (
                UPDATE property.developments
                SET price_from = GREATEST(1000, round(price_from * $2::numeric))::bigint,
                    price_to = GREATEST(1000, round(price_from * $2::numeric), round(price_to * $2::numeric))::bigint
                WHERE listing_id = $1 RETURNING 1)
            SELECT (SELECT count(*) FROM existing) + (SELECT count(*) FROM development)
            """, [id, factor])
        return result.first?[0] != "0"
    }

    private mutating func uploadMedia(on connection: PostgresConnection) throws(PostgresError) -> Bool {
        let id = listingID()
        let primary = Bool.random(using: &random)
        mediaCounter += 1
        let url = "https://img.example.com/listings/\(id)/upload-\(random.next() % 1_000_000)-\(mediaCounter).jpg"
        return try transaction(on: connection) { () throws(PostgresError) -> Bool in
            // Lock the listing so two writers cannot pick the same next position.
            let exists = try connection.query("SELECT 1 FROM property.listings WHERE id = $1 FOR UPDATE", [id])
            guard !exists.isEmpty else { return false }
            if primary {
                try connection.query(
                    "UPDATE property.media SET is_primary = false WHERE listing_id = $1 AND is_primary", [id])
            }
            try connection.query("""
                INSERT INTO property.media (listing_id, url, is_primary, position)
                SELECT $1, $2, $3, COALESCE(max(position) + 1, 0) FROM property.media WHERE listing_id = $1
                """, [id, url, primary])
            return true
        }
    }

    private mutating func flipStatus(on connection: PostgresConnection) throws(PostgresError) -> Bool {
        let id = listingID()
        // Mostly a visible status change; one in five archives; archived or sold listings come back.
        let archive = random.next() % 5 == 0
        let result = try connection.query("""
            UPDATE property.listings
            SET status = CASE
                    WHEN status IN ('archived', 'sold') THEN 'active'
                    WHEN $2 THEN 'archived'
                    WHEN status = 'active' THEN 'published'
                    ELSE 'active' END,
                updated_at = GREATEST(now(), created_at)
            WHERE id = $1 AND status <> 'draft'
            """, [id, archive])
        return result.affectedRows > 0
    }

    private mutating func renameLocation(on connection: PostgresConnection) throws(PostgresError) -> Bool {
        let id = Int64.random(in: locationIDs, using: &random)
        let result = try connection.query("""
            UPDATE property.locations
            SET area = CASE WHEN right(area, length($2)) = $2 THEN left(area, length(area) - length($2))
                            ELSE area || $2 END
            WHERE id = $1
            """, [id, Self.renameSuffix])
        return result.affectedRows > 0
    }

    private func transaction<T>(on connection: PostgresConnection, _ body: () throws(PostgresError) -> T)
        throws(PostgresError) -> T
    {
        try connection.executeScript("BEGIN")
        do {
            let value = try body()
            try connection.executeScript("COMMIT")
            return value
        } catch {
            try? connection.executeScript("ROLLBACK")
            throw error
        }
    }
}
