import ExploreQuery
import Testing

/// Readers running while a writer applies batches never see a half-applied batch.
@Suite struct ConcurrencyTests {
    /// Every batch moves rooms between the two rows of a pair (ids `2k`, `2k+1`) and may delete or re-insert
    /// a whole pair, so in any consistent state both rows of a pair exist together and their bedrooms sum to 10.
    static func pair(_ k: Int64, split: Int32, createdAt: Int64, area: String = "A") -> [ExploreListing] {
        [split, 10 - split].enumerated().map { offset, bedrooms in
            ExploreListing(id: 2 * k + Int64(offset), listingType: .existing, status: "active", title: "pair \(k)",
                           locationID: k % 7, priceFrom: Int64(bedrooms) * 1000, priceTo: Int64(bedrooms) * 1000,
                           bedrooms: bedrooms, bathrooms: 1, primaryImageURL: nil, city: "C\(k % 3)", area: area,
                           createdAt: createdAt)
        }
    }

    /// With `relayouts`, pairs re-inserted move to other areas (rows out of place) and a low threshold makes the
    /// index lay its store out again and again while the readers run.
    @Test(arguments: [false, true])
    func readersNeverSeeTornBatches(relayouts: Bool) async throws {
        let pairs: Int64 = 300
        let rows = (0..<pairs).flatMap { Self.pair($0, split: 5, createdAt: $0) }
        let index = ExploreIndex(store: ExploreStore(bulk: rows), relayoutThreshold: relayouts ? 0.01 : nil)
        let batches = 300
        await withTaskGroup(of: Int.self) { group in
            group.addTask {
                var random = SeededRandom(seed: 1)
                for step in 0..<batches {
                    var changes: [ListingChange] = []
                    // Every other batch is large enough (up to 120 listings) to be applied on all cores.
                    for _ in 0..<(step % 2 == 0 ? 20 : 60) {
                        let k = Int64.random(in: 0..<pairs, using: &random)
                        if Int.random(in: 0..<5, using: &random) == 0 {
                            changes += [.delete(2 * k), .delete(2 * k + 1)]
                        } else {
                            let area = relayouts ? "A\(Int.random(in: 0..<4, using: &random))" : "A"
                            changes += Self.pair(k, split: Int32.random(in: 0...10, using: &random),
                                                 createdAt: Int64(step), area: area).map { .upsert($0) }
                        }
                    }
                    index.apply(ListingChangeBatch(changes))
                }
                return 0
            }
            for reader in 0..<2 {
                group.addTask {
                    var violations = 0
                    for round in 0..<150 {
                        let sort = SortOrder.allCases[(round + reader) % 4]
                        guard let result = try? index.search(SearchQuery(sort: sort, limit: 1000, facets: [.bedrooms]))
                        else { return -1 }
                        let all = index.rows(ids: (0..<2 * pairs).map { $0 })
                        var byPair: [Int64: [Int32]] = [:]
                        for row in all { byPair[row.id / 2, default: []].append(row.bedrooms ?? -100) }
                        for rooms in byPair.values where rooms.count != 2 || rooms.reduce(0, +) != 10 {
                            violations += 1
                        }
                        if (result.total ?? 1) % 2 != 0 { violations += 1 }
                        // Facet counts must also pair up: a bedrooms value b occurs as often as 10 - b.
                        let counts = Dictionary(uniqueKeysWithValues: result.facets[0].counts.map {
                            guard case .bedrooms(let b) = $0.value else { return (Int32(-1), 0) }
                            return (b, $0.count)
                        })
                        for (value, count) in counts where counts[10 - value] != count { violations += 1 }
                    }
                    return violations
                }
            }
            var total = 0
            for await violations in group { total += violations == -1 ? 1 : violations }
            #expect(total == 0)
        }
        if relayouts {
            // On a busy machine the last relayout may still be loading when the writer stops.
            index.settleRelayouts(minimum: 1)
            #expect(index.relayoutsCompleted > 0)
        }
    }
}
