import DemoData
import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreWire
import NIOCore
import NIOPosix
import Synchronization

/// A deliberately simple linear-scan backend: enough of the query language (filters, sort, offset, total,
/// city facet) to check that what travels over the wire is exactly what the backend answered.
final class ReferenceBackend: SearchBackend {
    let rows: [ExploreListing]

    init(rows: [ExploreListing]) { self.rows = rows }

    func search(_ query: SearchQuery) throws(QueryError) -> SearchResult {
        guard SearchQuery.limitRange.contains(query.limit) else {
            throw QueryError(.limitOutOfRange, "limit must be 1...1000")
        }
        let filter = query.filter
        let matching = rows.filter { row in
            if let types = filter.listingTypes, !types.contains(row.listingType) { return false }
            if let cities = filter.cities, !cities.contains(row.city) { return false }
            if let minimum = filter.priceMin, (row.priceTo ?? Int64.min) < minimum { return false }
            if let maximum = filter.priceMax, (row.priceFrom ?? Int64.max) > maximum { return false }
            if let minimum = filter.bedroomsMin, (row.bedrooms ?? Int32.min) < minimum { return false }
            return true
        }
        let sorted = matching.sorted { lhs, rhs in
            switch query.sort {
            case .priceAscending: (lhs.priceFrom ?? .max, lhs.id) < (rhs.priceFrom ?? .max, rhs.id)
            case .priceDescending: (-(lhs.priceFrom ?? .min), lhs.id) < (-(rhs.priceFrom ?? .min), rhs.id)
            case .newest: (-lhs.createdAt, lhs.id) < (-rhs.createdAt, rhs.id)
            case .oldest: (lhs.createdAt, lhs.id) < (rhs.createdAt, rhs.id)
            }
        }
        var offset = 0
        if case .offset(let value) = query.start { offset = min(value, sorted.count) }
        let page = Array(sorted[offset..<min(sorted.count, offset + query.limit)])
        var facets: [FacetCounts] = []
        if query.facets.contains(.city) {
            var counts: [String: Int] = [:]
            for row in matching { counts[row.city, default: 0] += 1 }
            facets.append(FacetCounts(field: .city, counts: counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }
                .map { (FacetValue.text($0.key), $0.value) }))
        }
        return SearchResult(total: query.includeTotal ? matching.count : nil, rows: page, columns: query.columns,
                            nextCursor: nil, facets: facets)
    }

    func rows(ids: [ListingID]) -> [ExploreListing] {
        let byID = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        return ids.compactMap { byID[$0] }
    }

    func statistics() -> BackendStatistics {
        BackendStatistics(listingCount: rows.count, memoryBytes: rows.count * 128, lastAppliedChange: 7)
    }
}

/// Counts admin calls and answers fixed reports.
final class RecordingAdmin: AdminHandler {
    let calls = Mutex(0)

    func rebuild() async throws -> RebuildReport {
        calls.withLock { $0 += 1 }
        return RebuildReport(listingCount: 99, durationMicroseconds: 1)
    }

    static let verifyReport = VerifyReport(checked: 99, mismatchCount: 1, sampleMismatchIDs: [7], pendingCount: 4)

    func verify() async throws -> VerifyReport {
        calls.withLock { $0 += 1 }
        return Self.verifyReport
    }
}

/// Admin operations that do not answer until ``open()``: requests that stay unanswered for as long as a test needs.
final class GatedAdmin: AdminHandler {
    private struct State {
        var isOpen = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Lets every waiting and later operation answer.
    func open() {
        let waiters = state.withLock { state in
            state.isOpen = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state in
                if !state.isOpen { state.waiters.append(continuation) }
                return state.isOpen
            }
            if resumeNow { continuation.resume() }
        }
    }

    func rebuild() async throws -> RebuildReport {
        await wait()
        return RebuildReport(listingCount: 1, durationMicroseconds: 1)
    }

    func verify() async throws -> VerifyReport {
        await wait()
        return VerifyReport(checked: 1, mismatchCount: 0, sampleMismatchIDs: [])
    }
}

let demoRows = DemoDataset(listings: 2_000, seed: 3).exploreRows()

/// Starts a server on 127.0.0.1 port 0, runs `body`, and always shuts the server down.
func withServer<T>(
    _ configuration: ExploreServerConfiguration = ExploreServerConfiguration(host: "127.0.0.1", port: 0),
    backend: any SearchBackend = ReferenceBackend(rows: demoRows), admin: (any AdminHandler)? = nil,
    _ body: (ExploreServer) async throws -> T
) async throws -> T {
    var configuration = configuration
    configuration.host = "127.0.0.1"
    configuration.port = 0
    let server = try await ExploreServer.start(configuration: configuration, backend: backend, admin: admin)
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// A raw connection that sends arbitrary bytes and collects decoded answer frames until the server closes.
struct RawConnection {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(port: Int) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maximumFrameSize: 1 << 24)))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        return RawConnection(channel: channel)
    }

    static func helloBytes(minimumVersion: UInt8 = 1, maximumVersion: UInt8 = 1, adminToken: String = "") -> [UInt8] {
        frame(.hello(Hello(minimumVersion: minimumVersion, maximumVersion: maximumVersion,
                           adminToken: Array(adminToken.utf8))), id: 0)
    }

    static func frame(_ request: WireRequest, id: UInt32) -> [UInt8] {
        var buffer = ByteBuffer()
        WireCodec.encode(request, requestID: id, into: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// Sends `bytes`, then reads answers until `count` frames arrived or the server closed.
    func exchange(_ bytes: [UInt8], expecting count: Int) async throws -> (responses: [(UInt32, WireResponse)], closed: Bool) {
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: bytes))
            var responses: [(UInt32, WireResponse)] = []
            var iterator = inbound.makeAsyncIterator()
            while responses.count < count {
                guard var body = try await iterator.next() else { return (responses, true) }
                let header = try WireCodec.decodeHeader(&body)
                responses.append((header.requestID, try WireCodec.decodeResponse(header, &body)))
            }
            return (responses, false)
        }
    }

    /// Like ``exchangeUntilClosed(_:)`` for streams the server may close midway: a write into the closed socket
    /// or a reset while reading ends the exchange instead of failing it. The write side is closed after `bytes`,
    /// so a stream that ends inside a frame is ended by end-of-file rather than by the idle timeout.
    func exchangeTolerant(_ bytes: [UInt8]) async throws -> [(UInt32, WireResponse)] {
        try await channel.executeThenClose { inbound, outbound in
            try? await outbound.write(ByteBuffer(bytes: bytes))
            outbound.finish()
            var responses: [(UInt32, WireResponse)] = []
            do {
                for try await var body in inbound {
                    let header = try WireCodec.decodeHeader(&body)
                    responses.append((header.requestID, try WireCodec.decodeResponse(header, &body)))
                }
            } catch is WireError {
                throw WireError(.malformedFrame, "the server sent an undecodable frame")
            } catch {
                // Connection reset after the server closed on a fatal violation.
            }
            return responses
        }
    }

    /// Sends `bytes` (nothing when empty) and reads every answer until the server closes the connection.
    func exchangeUntilClosed(_ bytes: [UInt8]) async throws -> [(UInt32, WireResponse)] {
        try await channel.executeThenClose { inbound, outbound in
            // Writing nothing would still fail once the server has closed, which a refusal on accept may
            // already have done (seen in CI as `I/O on closed channel`).
            if !bytes.isEmpty { try await outbound.write(ByteBuffer(bytes: bytes)) }
            var responses: [(UInt32, WireResponse)] = []
            for try await var body in inbound {
                let header = try WireCodec.decodeHeader(&body)
                responses.append((header.requestID, try WireCodec.decodeResponse(header, &body)))
            }
            return responses
        }
    }
}

extension SearchResult {
    /// The result as a client sees it: rows reduced to the asked columns.
    func projected() -> SearchResult {
        SearchResult(total: total, rows: rows.map { $0.projected(onto: columns) }, columns: columns,
                     nextCursor: nextCursor, facets: facets)
    }
}

extension WireResponse {
    /// The code of an `ERROR` answer; `nil` for any other answer.
    var errorCode: WireError.Code? {
        if case .error(let error) = self { return error.code }
        return nil
    }
}
