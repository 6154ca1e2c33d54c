/// The definition of the `explore_listings` read model, shared by everything that creates, recomputes or
/// verifies it: the defining query, its restricted form, and how a change to a base table maps to the
/// listings it affects.
///
/// The query text is `projections/explore_listings.sql`, embedded here verbatim (a test keeps the two equal, and
/// another compares it with the materialized view migration 0010 creates), so the PostgreSQL objects, the
/// incremental recompute and the verifier cannot drift apart.
public enum ProjectionDefinition {
    /// Name of the feed in `explore.checkpoint`.
    public static let feedName = "explore_listings"
    /// The channel the outbox triggers notify.
    public static let notificationChannel = "explore_changes"
    /// The materialized projection table.
    public static let projectionTable = "explore.listings_projection"
    /// The outbox the base-table triggers append to.
    public static let outboxTable = "explore.change_outbox"
    /// The plain materialized view of the same query (the refresh baseline).
    public static let materializedView = "explore.explore_listings_mv"

    /// The read model's columns, in the order the defining query returns them.
    public static let columns = [
        "id", "listing_type", "status", "title", "location_id", "price_from", "price_to", "bedrooms",
        "bathrooms", "primary_image_url", "city", "area", "created_at",
    ]

    /// Opens a restriction marker in ``template``: `{{restriction:COLUMN}}`, COLUMN holding a listing id.
    public static let restrictionMarker = "{{restriction:"

    /// `projections/explore_listings.sql`, verbatim.
    public static let template = #"""
-- The defining query of the explore_listings read model: one row per live listing, prices coalesced across
-- listing types, the primary image and the location's names joined in. Missing optional rows (no type-specific
-- row, no primary image, a location that no longer exists) give NULLs, never a lost listing.
--
-- {{restriction:COLUMN}} marks where the query can be restricted to some listings; COLUMN holds the listing id
-- of that table's rows. For the whole read model every marker is replaced by nothing; to recompute only some
-- listings each becomes `AND COLUMN = ANY($1::bigint[])`, so every table is read through its index for just
-- those listings (a filter on listings alone lets the planner hash-join whole tables at a million listings).
-- Sources/Projector/ProjectionDefinition.swift embeds this text (a test keeps the two identical), and
-- sql/0010_explore_projection.up.sql creates explore.explore_listings_mv from it (a test compares the server's
-- parsed definitions).
SELECT
    l.id,
    l.type                          AS listing_type,
    l.status,
    l.title,
    l.location_id,
    COALESCE(d.price_from, e.price) AS price_from,
    COALESCE(d.price_to, e.price)   AS price_to,
    e.bedrooms,
    e.bathrooms,
    m.url                           AS primary_image_url,
    loc.city,
    loc.area,
    l.created_at
FROM property.listings l
LEFT JOIN property.developments d ON d.listing_id = l.id {{restriction:d.listing_id}}
LEFT JOIN property.existing_properties e ON e.listing_id = l.id {{restriction:e.listing_id}}
LEFT JOIN property.media m ON m.listing_id = l.id AND m.is_primary {{restriction:m.listing_id}}
LEFT JOIN property.locations loc ON loc.id = l.location_id
WHERE l.status IN ('published', 'active')
    {{restriction:l.id}}
"""#

    /// The columns named by the restriction markers, in template order.
    public static var restrictedColumns: [String] {
        var columns: [String] = []
        _ = replacingRestrictions { column in
            columns.append(column)
            return ""
        }
        return columns
    }

    /// The whole read model.
    public static var fullQuery: String {
        replacingRestrictions { _ in "" }
    }

    /// The read model restricted to the listing ids bound to `$parameter` (a `bigint[]`): every table is
    /// filtered by those ids, so each is read through its index for just those listings.
    public static func restrictedQuery(parameter: Int = 1) -> String {
        replacingRestrictions { column in "AND \(column) = ANY($\(parameter)::bigint[])" }
    }

    /// `template` (default: ``template``) with each `{{restriction:COLUMN}}` replaced by `replacement(COLUMN)`;
    /// comment lines (which describe the markers) are kept as they are.
    static func replacingRestrictions(in template: String = template, _ replacement: (String) -> String) -> String {
        let lines: [Substring] = template.split(separator: "\n", omittingEmptySubsequences: false)
        return lines.map { (line: Substring) -> String in
            if line.drop(while: { $0 == " " }).starts(with: "--") { return String(line) }
            var result = ""
            var rest = line
            while let open = rest.firstRange(of: restrictionMarker),
                  let close = rest[open.upperBound...].firstRange(of: "}}")
            {
                result += rest[..<open.lowerBound]
                result += replacement(String(rest[open.upperBound..<close.lowerBound]))
                rest = rest[close.upperBound...]
            }
            return result + rest
        }.joined(separator: "\n")
    }

    /// The read model's columns as `alias.column`, with `created_at` as microseconds since the Unix epoch (the
    /// cache's representation; `extract(epoch …)` returns an exact `numeric`).
    static func cacheColumns(_ alias: String) -> String {
        columns.map { column in
            column == "created_at"
                ? "(extract(epoch FROM \(alias).created_at) * 1000000)::bigint AS created_at_us"
                : "\(alias).\(column)"
        }.joined(separator: ", ")
    }

    /// Which base table an outbox entry comes from, and what its key means.
    public enum Source: String, Sendable, Hashable, CaseIterable {
        case listings
        case developments
        case existingProperties = "existing_properties"
        case media
        case locations

        /// How a change to this table maps to affected listings.
        public var keyKind: KeyKind {
            self == .locations ? .locationID : .listingID
        }
    }

    /// What an outbox key identifies.
    public enum KeyKind: Sendable, Hashable {
        /// The listing itself (a listing row's id; a development, existing property or media row's listing_id).
        case listingID
        /// A location: every listing at that location is affected, both those in the base tables now and those
        /// the projection still holds there.
        case locationID
    }

    /// SQL returning the listing ids at the locations bound to `$1` (`bigint[]`), in the base tables and in the
    /// projection, so a listing that moved away or whose location vanished is recomputed too.
    static let listingsAtLocationsQuery = """
        SELECT id FROM property.listings WHERE location_id = ANY($1::bigint[])
        UNION
        SELECT id FROM explore.listings_projection WHERE location_id = ANY($1::bigint[])
        """
}
