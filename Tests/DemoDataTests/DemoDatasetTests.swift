import DemoData
import ExploreQuery
import Testing

@Suite struct DemoDatasetTests {
    @Test func sameSeedSameRowsDifferentSeedDifferentRows() {
        let first = DemoDataset(listings: 2_000, seed: 7)
        let again = DemoDataset(listings: 2_000, seed: 7)
        let other = DemoDataset(listings: 2_000, seed: 8)
        #expect(first.exploreRows() == again.exploreRows())
        #expect(first.exploreRows() != other.exploreRows())
        // Random access yields the same rows as a sequential walk.
        var walked: [DemoListing] = []
        first.forEachListing { walked.append($0) }
        #expect(walked.indices.allSatisfy { walked[$0] == first.listing(at: $0) })
        #expect((0..<first.draftCount).map(first.draft(at:)) == (0..<again.draftCount).map(again.draft(at:)))
    }

    @Test func distributionsMatchTheDocumentedShape() {
        let data = DemoDataset(listings: 50_000)
        var developments = 0, hidden = 0, withPrimary = 0
        var perCity: [String: Int] = [:]
        data.forEachListing { listing in
            #expect((listing.type == .development) == (listing.development != nil))
            #expect((listing.type == .existing) == (listing.existing != nil))
            #expect(listing.media.filter(\.isPrimary).count <= 1)
            if let development = listing.development { #expect(development.priceFrom <= development.priceTo) }
            if let existing = listing.existing { #expect((0...6).contains(existing.bedrooms)) }
            if listing.type == .development { developments += 1 }
            if !listing.isVisibleInExplore { hidden += 1 }
            if listing.media.contains(where: \.isPrimary) { withPrimary += 1 }
            perCity[data.locations[Int(listing.locationID - 1)].city, default: 0] += 1
        }
        #expect((0.27...0.33).contains(Double(developments) / 50_000))
        #expect((0.06...0.10).contains(Double(hidden) / 50_000))
        #expect((0.90...0.94).contains(Double(withPrimary) / 50_000))
        // Zipf: the biggest city holds several times the tenth, and every city has listings.
        let sizes = perCity.values.sorted(by: >)
        #expect(sizes[0] > 4 * sizes[9])
        #expect(perCity.count == Set(data.locations.map(\.city)).count)
        #expect(Set(data.locations.map(\.area)).count > 30)
    }

    @Test func exploreRowFollowsTheCanonicalDefinition() throws {
        let data = DemoDataset(listings: 5_000, seed: 3)
        var visible = 0
        data.forEachListing { listing in
            guard let row = data.exploreRow(for: listing) else {
                #expect(!listing.isVisibleInExplore)
                return
            }
            visible += 1
            #expect(row.priceFrom == (listing.development?.priceFrom ?? listing.existing?.price))
            #expect(row.priceTo == (listing.development?.priceTo ?? listing.existing?.price))
            #expect(row.bedrooms == listing.existing?.bedrooms)
            #expect(row.primaryImageURL == listing.media.first(where: \.isPrimary)?.url)
            #expect(row.city == data.locations[Int(listing.locationID - 1)].city)
        }
        #expect(visible == data.exploreRows().count)
        #expect(visible > 0)
    }

    @Test func draftPayloadsAreWellFormedJSONObjects() {
        let data = DemoDataset(listings: 5_000)
        for index in 0..<data.draftCount {
            let draft = data.draft(at: index)
            #expect(draft.payloadJSON.hasPrefix("{") && draft.payloadJSON.hasSuffix("}"))
            #expect((1...5).contains(draft.step))
        }
    }
}
