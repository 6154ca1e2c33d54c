import ExploreQuery
@testable import ExploreServer
import ExploreWire
import Testing

@Suite("Request processor")
struct RequestProcessorTests {
    @Test("token comparison accepts only the exact token")
    func tokens() {
        let token = "s3cret"
        #expect(RequestProcessor.tokenMatches(offered: Array(token.utf8), configured: token))
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var offered = Array(token.utf8)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: offered[Int.random(in: 0..<offered.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            case 1: offered += (0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 2: offered.removeLast(Int.random(in: 1...offered.count, using: &rng))
            default: offered = Array(token.utf8) + [UInt8](repeating: 0, count: 256)
            }
            #expect(!RequestProcessor.tokenMatches(offered: offered, configured: token))
        }
        #expect(!RequestProcessor.tokenMatches(offered: [], configured: ""))
        #expect(!RequestProcessor.tokenMatches(offered: [], configured: nil))
    }

    @Test("feature flags refuse disabled filters, facets and types and restrict unfiltered searches")
    func featureFlags() throws {
        var configuration = ExploreServerConfiguration()
        configuration.features = FeatureFlags(enabledFilters: Set(FilterField.allCases).subtracting([.city]),
                                              enabledListingTypes: [.development])
        let processor = RequestProcessor(configuration: configuration, backend: ReferenceBackend(rows: []),
                                         hasAdminHandler: false)
        for field in FilterField.allCases {
            var query = SearchQuery()
            switch field {
            case .listingType: query.filter.listingTypes = [.development]
            case .status: query.filter.statuses = ["active"]
            case .city: query.filter.cities = ["Lisbon"]
            case .area: query.filter.areas = ["Alfama"]
            case .locationID: query.filter.locationIDs = [1]
            case .price: query.filter.priceMax = 1
            case .bedrooms: query.filter.bedroomsMin = 1
            case .bathrooms: query.filter.bathroomsMin = 1
            case .createdAt: query.filter.createdAfter = 1
            }
            let outcome = Result { () throws(QueryError) in try processor.applyFeatureFlags(to: query) }
            if field == .city {
                #expect(throws: QueryError.self) { try outcome.get() }
            } else {
                #expect(try outcome.get().filter.listingTypes == [.development])
            }
        }
        #expect(throws: QueryError.self) { try processor.applyFeatureFlags(to: SearchQuery(facets: [.city])) }
        var existing = SearchQuery()
        existing.filter.listingTypes = [.existing, .development]
        #expect(throws: QueryError.self) { try processor.applyFeatureFlags(to: existing) }
    }
}
