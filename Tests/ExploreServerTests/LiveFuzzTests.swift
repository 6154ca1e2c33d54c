import DemoData
import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreWire
import NIOCore
import Synchronization
import Testing

@Suite("Live server fuzzing", .serialized, .timeLimit(.minutes(3)))
struct LiveFuzzTests {
    static let documentedCodes: Set<WireError.Code> = [
        .malformedFrame, .unknownOpcode, .invalidFlags, .frameTooLarge, .badHandshake, .unsupportedVersion,
        .duplicateHandshake, .idleTimeout, .tooManyIDs, .adminUnavailable, .unauthorized,
        .unknownField, .invalidRange, .limitOutOfRange, .malformedCursor, .cursorMismatch, .invalidValue,
        .offsetOutOfRange, .disabled,
    ]

    /// One mutated stream: usually a valid HELLO first, then frames that are random, truncated, oversized,
    /// flipped or carry huge counts.
    static func mutatedStream(_ rng: inout SplitMix64) -> [UInt8] {
        var bytes = rng.next() % 8 == 0 ? [] : RawConnection.helloBytes()
        for index in 0..<10 {
            var frame: [UInt8]
            switch rng.next() % 6 {
            case 0: frame = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:
                var query = SearchQuery(limit: Int(rng.next() % 1_200))
                query.filter.cities = ["Lisbon"]
                frame = RawConnection.frame(.search(query), id: UInt32(index))
                frame = Array(frame.prefix(Int(rng.next() % UInt64(frame.count + 1))))
            case 2: frame = [0x7F, 0xFF, 0xFF, 0xFF]
            case 3:
                frame = RawConnection.frame(.get(ids: [1, 2, 3], columns: .all), id: UInt32(index))
                frame.insert(contentsOf: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], at: 9)
                frame.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(frame.count - 4).bigEndian, Array.init))
            case 4:
                frame = RawConnection.frame(.search(SearchQuery()), id: UInt32(index))
                let position = 4 + Int(rng.next() % UInt64(frame.count - 4))
                frame[position] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8))
            default:
                frame = RawConnection.frame([WireRequest.rebuild, .stats, .ping([1]), .verify][Int(rng.next() % 4)], id: UInt32(index))
                frame[4] = UInt8(truncatingIfNeeded: rng.next())
            }
            bytes += frame
        }
        return bytes
    }


    @Test("2,000 mutated frames over 200 connections; a well-behaved client is served correctly throughout")
    func fuzzLiveServer() async throws {
        let configuration = ExploreServerConfiguration()
        let backend = ReferenceBackend(rows: Array(demoRows.prefix(300)))
        try await withServer(configuration, backend: backend) { server in
            let done = Atomic(false)
            let good = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            async let goodAnswers: Int = {
                var answered = 0
                var query = SearchQuery(limit: 5)
                query.filter.cities = ["Lisbon"]
                let expected = try backend.search(query).projected()
                // Keeps asking while the fuzzing runs (bounded either way).
                while !done.load(ordering: .relaxed) && answered < 100_000 {
                    #expect(try await good.search(query) == expected)
                    answered += 1
                }
                return answered
            }()
            var rng = SplitMix64(seed: 2026)
            let streams = (0..<200).map { _ in Self.mutatedStream(&rng) }
            let undocumented = try await withThrowingTaskGroup(of: Int.self) { group in
                var bad = 0
                for (index, stream) in streams.enumerated() {
                    if index >= 25 { bad += try await group.next() ?? 0 }
                    group.addTask {
                        let connection = try await RawConnection.connect(port: server.port)
                        let responses = try await connection.exchangeTolerant(stream)
                        return responses.filter { response in
                            if case .error(let error) = response.1 { return !Self.documentedCodes.contains(error.code) }
                            return false
                        }.count
                    }
                }
                for try await count in group { bad += count }
                return bad
            }
            done.store(true, ordering: .relaxed)
            #expect(undocumented == 0)
            #expect(try await goodAnswers > 0)
            #expect(try await good.ping([1]) == [1])
            await good.close()
        }
    }
}
