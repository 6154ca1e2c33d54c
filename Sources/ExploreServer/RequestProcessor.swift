import ExploreQuery
import ExploreWire
import Foundation

/// Turns one decoded request into its answer, applying feature flags and limits. Pure apart from the backend call,
/// so it is testable without sockets.
struct RequestProcessor: Sendable {
    enum AdminOperation: Sendable { case rebuild, verify }

    enum Outcome: Sendable {
        /// Answer now.
        case respond(WireResponse)
        /// Run the admin operation off the event loop, then answer.
        case admin(AdminOperation)
    }

    let configuration: ExploreServerConfiguration
    let backend: any SearchBackend
    let hasAdminHandler: Bool

    /// Answers a request on an established connection.
    func process(_ request: WireRequest, adminGranted: Bool) -> Outcome {
        switch request {
        case .hello:
            return .respond(.error(WireError(.duplicateHandshake, "the connection is already established")))
        case .ping(let payload):
            return .respond(.pong(payload))
        case .search(let query):
            do {
                let result = try backend.search(try applyFeatureFlags(to: query))
                return .respond(.searchResult(result))
            } catch {
                return .respond(.error(WireError(mapping: error)))
            }
        case .get(let ids, let columns):
            guard ids.count <= configuration.maximumGetIDs else {
                return .respond(.error(WireError(.tooManyIDs, "at most \(configuration.maximumGetIDs) ids per GET")))
            }
            var rows = backend.rows(ids: ids)
            let enabled = configuration.features.enabledListingTypes
            if enabled.count < ListingType.allCases.count {
                rows.removeAll { !enabled.contains($0.listingType) }
            }
            return .respond(.rows(columns: columns, rows: rows))
        case .stats:
            preconditionFailure("STATS is answered by the connection, which knows the connection-level figures")
        case .rebuild, .verify:
            guard configuration.adminToken != nil, hasAdminHandler else {
                return .respond(.error(WireError(.adminUnavailable, "admin operations are not configured")))
            }
            guard adminGranted else {
                return .respond(.error(WireError(.unauthorized, "admin token missing or wrong")))
            }
            return .admin(request == .rebuild ? .rebuild : .verify)
        }
    }

    /// Refuses disabled filters, facets and listing types; restricts unfiltered searches to enabled types.
    func applyFeatureFlags(to query: SearchQuery) throws(QueryError) -> SearchQuery {
        let features = configuration.features
        if let field = query.filter.usedFields.first(where: { !features.enabledFilters.contains($0) }) {
            throw QueryError(.disabled, "filter \(field.name) is disabled on this server")
        }
        if let facet = query.facets.first(where: { !features.enabledFilters.contains($0.ownFilter) }) {
            throw QueryError(.disabled, "facet \(facet.name) is disabled on this server")
        }
        guard features.enabledListingTypes.count < ListingType.allCases.count else { return query }
        var restricted = query
        if let types = query.filter.listingTypes {
            if let type = types.first(where: { !features.enabledListingTypes.contains($0) }) {
                throw QueryError(.disabled, "listing type \(type.name) is disabled on this server")
            }
        } else {
            restricted.filter.listingTypes = features.enabledListingTypes
        }
        return restricted
    }

    /// Constant-time comparison of the offered token with the configured one: the time taken depends only on
    /// the lengths, never on where the first differing byte is.
    static func tokenMatches(offered: [UInt8], configured: String?) -> Bool {
        guard let configured, !configured.isEmpty else { return false }
        let expected = Array(configured.utf8)
        var difference = expected.count ^ offered.count
        for index in 0..<expected.count {
            difference |= Int(expected[index] ^ (index < offered.count ? offered[index] : 0))
        }
        return difference == 0
    }
}
