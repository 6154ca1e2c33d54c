/// A versioned defining query of the read model: what a full rebuild builds, and what the projection's recorded
/// version is compared with on start.
///
/// Changing the defining query (``ProjectionDefinition/template``) in a way that changes rows means shipping a
/// new ``version``: a service starting against a table built with another version rebuilds it in the background
/// (expand: build the new table beside the old one; backfill; switch in one transaction; contract: drop the old
/// one) while it keeps serving the old one. See projections/README.md.
public struct ProjectionQuery: Sendable, Hashable {
    /// The definition's version, recorded in `explore.projection_state` with the table built from it.
    public var version: Int
    /// The query text with restriction markers (``ProjectionDefinition/restrictionMarker``).
    public var template: String

    /// Creates a definition.
    public init(version: Int, template: String) {
        self.version = version
        self.template = template
    }

    /// The definition this binary ships.
    public static let shipped = ProjectionQuery(version: 1, template: ProjectionDefinition.template)

    /// The whole read model.
    public var fullQuery: String {
        ProjectionDefinition.replacingRestrictions(in: template) { _ in "" }
    }

    /// The rows whose listing id is in the `bigint[]` bound to `$parameter`.
    public func restrictedQuery(parameter: Int = 1) -> String {
        ProjectionDefinition.replacingRestrictions(in: template) { column in
            "AND \(column) = ANY($\(parameter)::bigint[])"
        }
    }

    /// The rows whose listing id lies in `[$lower, $upper)` (two `bigint` parameters): one chunk of a rebuild.
    /// Every listing-keyed table gets the range, so each is read through its index for just that chunk.
    public func rangeQuery(lower: Int = 1, upper: Int = 2) -> String {
        ProjectionDefinition.replacingRestrictions(in: template) { column in
            "AND \(column) >= $\(lower)::bigint AND \(column) < $\(upper)::bigint"
        }
    }
}
