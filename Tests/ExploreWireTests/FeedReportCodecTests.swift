import ExploreWire
import NIOCore
import Testing

/// `STATS_RESULT`'s feed report (protocol version 2): round-trips, the version 1 layout kept for version 1
/// connections, and every malformed variant refused.
@Suite("Feed report in STATS_RESULT")
struct FeedReportCodecTests {
    static func statistics(version: UInt8, feed: FeedReport?) -> ServerStatistics {
        ServerStatistics(listingCount: 10, memoryBytes: 20, feedLagMicroseconds: 30, lastAppliedChange: 40,
                         uptimeMicroseconds: 50, openConnections: 1, protocolVersion: version, features: .all,
                         serverVersion: "t", feed: feed)
    }

    static let fullReport = FeedReport(
        isConnected: true, isBootstrapped: true, batches: 3, failures: 2, rejectedEvents: 1, pendingChanges: 9,
        lastError: "boom", rebuild: RebuildStatus(phase: .loadingCache, rowsDone: 5, rowsTotal: 8,
                                                  elapsedMicroseconds: 1_000_000))

    static func encode(_ stats: ServerStatistics) -> [UInt8] {
        var buffer = ByteBuffer()
        WireCodec.encode(.stats(stats), requestID: 9, into: &buffer)
        return Array(buffer.readableBytesView)
    }

    static func decode(_ bytes: [UInt8]) throws -> ServerStatistics? {
        let decoded = try decodeResponses(ByteBuffer(bytes: bytes))
        guard decoded.count == 1, case .stats(let stats) = decoded[0].1 else { return nil }
        return stats
    }

    /// A frame around a version 2 `STATS_RESULT` whose feed report is `feedBytes`.
    static func frame(feedBytes: [UInt8]) -> [UInt8] {
        let prefix = encode(statistics(version: 2, feed: nil)).dropLast()  // drop the "no feed" presence byte
        var body = Array(prefix.dropFirst(4)) + feedBytes
        let length = UInt32(body.count)
        body.insert(contentsOf: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                                 UInt8(length & 0xFF)], at: 0)
        return body
    }

    @Test("a version 2 answer round-trips with and without each optional part")
    func roundTrip() throws {
        var variants: [FeedReport?] = [nil, Self.fullReport]
        var partial = Self.fullReport
        partial.pendingChanges = nil
        variants.append(partial)
        partial.lastError = nil
        variants.append(partial)
        partial.rebuild?.rowsTotal = nil
        variants.append(partial)
        partial.rebuild = nil
        variants.append(partial)
        for feed in variants {
            let stats = Self.statistics(version: 2, feed: feed)
            #expect(try Self.decode(Self.encode(stats)) == stats)
        }
    }

    @Test("a version 1 answer keeps the version 1 layout: the feed report is left out")
    func versionOneLayout() throws {
        let withFeed = Self.encode(Self.statistics(version: 1, feed: Self.fullReport))
        let withoutFeed = Self.encode(Self.statistics(version: 1, feed: nil))
        #expect(withFeed == withoutFeed)
        #expect(try Self.decode(withFeed) == Self.statistics(version: 1, feed: nil))
    }

    @Test("malformed feed reports are refused with malformed_frame", arguments: [
        [0x20],                              // unknown presence bit
        [0x02, 0x07],                        // pending changes without the feed state
        [0x11, 0x03, 0, 0, 0],               // rebuild total without a rebuild
        [0x01, 0x04, 0, 0, 0],               // unknown feed state bit
        [0x09, 0x03, 0, 0, 0, 0x04, 0, 0],   // unknown rebuild phase
        [0x01, 0x03, 0, 0],                  // truncated: rejected_events missing
        [0x01, 0x03, 0, 0, 0, 0],            // trailing byte
    ] as [[UInt8]])
    func malformed(feedBytes: [UInt8]) {
        #expect(throws: WireError.self) { try Self.decode(Self.frame(feedBytes: feedBytes)) }
        do {
            _ = try Self.decode(Self.frame(feedBytes: feedBytes))
        } catch let error as WireError {
            #expect(error.code == .malformedFrame)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("every truncation of a full version 2 answer is refused")
    func truncations() {
        let bytes = Self.encode(Self.statistics(version: 2, feed: Self.fullReport))
        let body = Array(bytes.dropFirst(4))
        for cut in 3..<body.count {
            var buffer = ByteBuffer(bytes: body[0..<cut])
            #expect(throws: WireError.self) {
                let header = try WireCodec.decodeHeader(&buffer)
                _ = try WireCodec.decodeResponse(header, &buffer)
            }
        }
    }

    @Test("a long last error is cut to 512 bytes at a character boundary")
    func longError() throws {
        var report = Self.fullReport
        report.lastError = String(repeating: "é", count: 400)  // 800 bytes
        let decoded = try Self.decode(Self.encode(Self.statistics(version: 2, feed: report)))
        let error = try #require(decoded?.feed?.lastError)
        #expect(error == String(repeating: "é", count: 256))
    }

    @Test("a multi-line last error travels as one line")
    func multiLineError() throws {
        var report = Self.fullReport
        report.lastError = "connection lost\nDETAIL: server closed\r\nthe connection"
        let decoded = try Self.decode(Self.encode(Self.statistics(version: 2, feed: report)))
        #expect(decoded?.feed?.lastError == "connection lost DETAIL: server closed the connection")
    }

    @Test("rebuild rate and ETA follow from rows and elapsed time")
    func rebuildRate() {
        let status = RebuildStatus(phase: .building, rowsDone: 250_000, rowsTotal: 1_000_000,
                                   elapsedMicroseconds: 5_000_000)
        #expect(status.rowsPerSecond == 50_000)
        #expect(status.etaSeconds == 15)
        #expect(RebuildStatus(phase: .building, rowsDone: 0, rowsTotal: 10, elapsedMicroseconds: 0).etaSeconds == nil)
        #expect(RebuildStatus(phase: .building, rowsDone: 1, rowsTotal: nil, elapsedMicroseconds: 1).etaSeconds == nil)
    }
}
