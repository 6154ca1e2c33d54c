import ExploreQuery
import ExploreWire
import Foundation
import NIOCore
import Testing

/// The hex examples in docs/protocol.md are parsed here and compared with the encoder's output and decoded back,
/// so the document and the code cannot drift.
@Suite("Golden vectors from docs/protocol.md")
struct GoldenVectorTests {
    enum Message { case request(WireRequest), response(WireResponse) }

    /// The examples, by the name used in the document's ```` ```hex golden=NAME ```` blocks.
    static let vectors: [String: (requestID: UInt32, message: Message)] = {
        var search = SearchQuery()
        search.filter.cities = ["Lisbon"]
        search.filter.priceMin = 100_000
        search.filter.priceMax = 500_000
        search.sort = .priceAscending
        search.limit = 20
        search.includeTotal = true
        search.facets = [.city]
        search.columns = [.title, .priceFrom, .city]
        let row = ExploreListing(id: 42, listingType: .existing, status: "active", title: "T2 Alfama",
                                 locationID: 7, priceFrom: 250_000, priceTo: 250_000, bedrooms: 2, bathrooms: 1,
                                 primaryImageURL: nil, city: "Lisbon", area: "Alfama", createdAt: 0)
        let result = SearchResult(total: 1, rows: [row.projected(onto: search.columns)], columns: search.columns,
                                  nextCursor: nil, facets: [FacetCounts(field: .city, counts: [(.text("Lisbon"), 1)])])
        let getColumns: ColumnSet = [.title, .bedrooms]
        return [
            "hello": (0, .request(.hello(Hello(minimumVersion: 1, maximumVersion: 1)))),
            "hello-admin": (0, .request(.hello(Hello(minimumVersion: 1, maximumVersion: 1, adminToken: Array("s3cret".utf8))))),
            "hello-ok": (0, .response(.helloAccepted(HelloAccepted(
                version: 1, features: FeatureFlags(enabledFilters: Set(FilterField.allCases).subtracting([.bathrooms]),
                                                   enabledListingTypes: [.development, .existing]),
                adminGranted: false, maximumFrameSize: 1 << 20, maximumInFlight: 128, serverVersion: "0.1.0")))),
            "ping": (1, .request(.ping([0xCA, 0xFE]))),
            "pong": (1, .response(.pong([0xCA, 0xFE]))),
            "search": (2, .request(.search(search))),
            "search-result": (2, .response(.searchResult(result))),
            "get": (3, .request(.get(ids: [42, 7], columns: getColumns))),
            "rows": (3, .response(.rows(columns: getColumns, rows: [row.projected(onto: getColumns)]))),
            "stats": (4, .request(.stats)),
            "stats-result": (4, .response(.stats(ServerStatistics(
                listingCount: 1_000, memoryBytes: 65_536, feedLagMicroseconds: nil, lastAppliedChange: 300,
                uptimeMicroseconds: 5_000_000, openConnections: 2, protocolVersion: 1, features: .all,
                serverVersion: "0.1.0")))),
            "stats-result-feed": (4, .response(.stats(ServerStatistics(
                listingCount: 1_000, memoryBytes: 65_536, feedLagMicroseconds: 1_500, lastAppliedChange: 300,
                uptimeMicroseconds: 5_000_000, openConnections: 2, protocolVersion: 2, features: .all,
                serverVersion: "0.1.0",
                feed: FeedReport(isConnected: true, isBootstrapped: true, batches: 12, failures: 1,
                                 rejectedEvents: 0, pendingChanges: 7))))),
            "stats-result-rebuild": (4, .response(.stats(ServerStatistics(
                listingCount: 1_000, memoryBytes: 65_536, feedLagMicroseconds: nil, lastAppliedChange: 300,
                uptimeMicroseconds: 5_000_000, openConnections: 1, protocolVersion: 2, features: .all,
                serverVersion: "0.1.0",
                feed: FeedReport(isConnected: false, isBootstrapped: true, batches: 0, failures: 1,
                                 rejectedEvents: 2, lastError: "connection lost",
                                 rebuild: RebuildStatus(phase: .building, rowsDone: 250_000, rowsTotal: 1_000_000,
                                                        elapsedMicroseconds: 5_000_000)))))),
            "rebuild": (5, .request(.rebuild)),
            "rebuild-result": (5, .response(.rebuilt(RebuildReport(listingCount: 1_000, durationMicroseconds: 12_345)))),
            "verify": (6, .request(.verify)),
            "verify-result": (6, .response(.verified(VerifyReport(checked: 1_000, mismatchCount: 1, sampleMismatchIDs: [42])))),
            "verify-result-v3": (6, .response(.verified(VerifyReport(checked: 1_000, mismatchCount: 1,
                                                                     sampleMismatchIDs: [42], pendingCount: 3)))),
            "error": (2, .response(.error(WireError(.limitOutOfRange, "limit must be 1...1000")))),
        ]
    }()

    /// Parses every ```` ```hex golden=NAME ```` block: hex byte pairs, `#` starts a comment.
    static func documentVectors() throws -> [String: [UInt8]] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        var vectors: [String: [UInt8]] = [:]
        var current: (name: String, bytes: [UInt8])?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let block = current {
                if line.hasPrefix("```") {
                    vectors[block.name] = block.bytes
                    current = nil
                    continue
                }
                let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                var bytes = block.bytes
                for token in code.split(separator: " ") {
                    guard let byte = UInt8(token, radix: 16), token.count == 2 else {
                        throw GoldenError.badHex(block.name, String(token))
                    }
                    bytes.append(byte)
                }
                current = (block.name, bytes)
            } else if line.hasPrefix("```hex golden=") {
                current = (String(line.dropFirst("```hex golden=".count)), [])
            }
        }
        return vectors
    }

    enum GoldenError: Error { case badHex(String, String) }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: " ")
    }

    @Test("every documented vector matches the encoder and decodes back")
    func vectorsMatch() throws {
        let documented = try Self.documentVectors()
        #expect(Set(documented.keys) == Set(Self.vectors.keys))
        for (name, vector) in Self.vectors.sorted(by: { $0.key < $1.key }) {
            var buffer = ByteBuffer()
            switch vector.message {
            case .request(let request): WireCodec.encode(request, requestID: vector.requestID, into: &buffer)
            case .response(let response): WireCodec.encode(response, requestID: vector.requestID, into: &buffer)
            }
            let encoded = Array(buffer.readableBytesView)
            #expect(documented[name] == encoded, "\(name): encoder writes \(Self.hex(encoded))")
            guard let bytes = documented[name] else { continue }
            switch vector.message {
            case .request(let request):
                let decoded = try decodeRequests(ByteBuffer(bytes: bytes))
                #expect(decoded.count == 1 && decoded[0].0 == vector.requestID && decoded[0].1 == request, "\(name)")
            case .response(let response):
                let decoded = try decodeResponses(ByteBuffer(bytes: bytes))
                #expect(decoded.count == 1 && decoded[0].0 == vector.requestID && decoded[0].1 == response, "\(name)")
            }
        }
    }
}
