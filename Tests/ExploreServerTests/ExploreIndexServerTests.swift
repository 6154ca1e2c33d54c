import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreWire
import Testing

/// The server in front of the real query engine: every answer over the wire equals the engine's direct answer,
/// including keyset paging with cursors that travel through the protocol.
@Suite("Server over ExploreIndex", .serialized, .timeLimit(.minutes(3)))
struct ExploreIndexServerTests {
    @Test("random queries and cursor paging over the wire equal the index's direct answers")
    func differential() async throws {
        let index = ExploreIndex(store: ExploreStore(bulk: demoRows))
        try await withServer(backend: index) { server in
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<300 {
                var query = randomQuery(&rng)
                if Bool.random(using: &rng) { query.facets = Set(FacetField.allCases.filter { _ in Bool.random(using: &rng) }) }
                let direct: Result<SearchResult, QueryError> = Result { () throws(QueryError) in try index.search(query) }
                do throws(ExploreClientError) {
                    let viaWire = try await client.search(query)
                    guard case .success(let expected) = direct else {
                        Issue.record("the wire answered a query the index refuses")
                        continue
                    }
                    #expect(viaWire == expected.projected())
                } catch {
                    guard case .failure(let expected) = direct else {
                        Issue.record("wire failed but the index answered: \(error)")
                        continue
                    }
                    #expect(error.queryError == expected)
                }
            }
            // Page through one city with cursors returned by the server.
            var query = SearchQuery(sort: .priceAscending, limit: 37, columns: [.priceFrom])
            query.filter.cities = [demoRows[0].city]
            var seen: [ListingID] = []
            for _ in 0..<1_000 {
                let page = try await client.search(query)
                seen += page.rows.map(\.id)
                guard let cursor = page.nextCursor else { break }
                query.start = .after(cursor)
            }
            let everything = try index.search(SearchQuery(filter: query.filter, sort: .priceAscending, limit: 1_000,
                                                          columns: []))
            #expect(seen == everything.rows.map(\.id))
            #expect(try await client.get(ids: [3, 1, 2]) == index.rows(ids: [3, 1, 2]))
            #expect(try await client.stats().listingCount == UInt64(index.count))
            await client.close()
        }
    }
}
