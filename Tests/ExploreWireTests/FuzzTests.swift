import DemoData
import ExploreQuery
import ExploreWire
import NIOCore
import Testing

/// Throws random and mutated frames at the decoder: it must never trap, never hold more than the frame limit,
/// and every failure must be a documented ``WireError`` code.
@Suite("Decoder fuzzing")
struct FuzzTests {
    static let documentedCodes: Set<WireError.Code> = [
        .malformedFrame, .unknownOpcode, .invalidFlags, .frameTooLarge, .badHandshake,
    ]

    enum Outcome { case decoded, needMore, failed(WireError.Code) }

    static func run(_ bytes: [UInt8], maximumFrameSize: Int) -> [Outcome] {
        var decoder = FrameDecoder(maximumFrameSize: maximumFrameSize)
        var stream = ByteBuffer(bytes: bytes)
        var outcomes: [Outcome] = []
        while true {
            do {
                guard var body = try decoder.decode(buffer: &stream) else {
                    outcomes.append(.needMore)
                    return outcomes
                }
                #expect(body.readableBytes <= maximumFrameSize)
                let header = try WireCodec.decodeHeader(&body)
                var copy = body
                let asRequest = Result { () throws(WireError) in try WireCodec.decodeRequest(header, &body) }
                let asResponse = Result { () throws(WireError) in try WireCodec.decodeResponse(header, &copy) }
                switch (asRequest, asResponse) {
                case (.success, _), (_, .success): outcomes.append(.decoded)
                case (.failure(let error), _): outcomes.append(.failed(error.code))
                }
            } catch let error as WireError {
                outcomes.append(.failed(error.code))
                // Recoverable errors leave the stream at the next frame; a bad length ends the stream.
                if error.code == .frameTooLarge { return outcomes }
            } catch {
                Issue.record("undocumented error type \(type(of: error))")
                return outcomes
            }
        }
    }

    @Test("100,000 random and mutated frames")
    func fuzz() {
        var random = RandomMessages(seed: 2026)
        var rng = SplitMix64(seed: 77)
        var seeds: [[UInt8]] = []
        for index in 0..<200 {
            var buffer = ByteBuffer()
            if index % 2 == 0 {
                WireCodec.encode(random.request(), requestID: UInt32(index), into: &buffer)
            } else {
                WireCodec.encode(random.response(), requestID: UInt32(index), into: &buffer)
            }
            seeds.append(Array(buffer.readableBytesView))
        }
        var counts = (decoded: 0, failed: 0, needMore: 0)
        for iteration in 0..<100_000 {
            var bytes = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
            switch iteration % 8 {
            case 0: // pure garbage
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: // truncated
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
            case 2: // oversized or forged length
                let length: UInt32 = [UInt32.max, 1 << 20 + 1, 0, UInt32.random(in: 0...UInt32.max, using: &rng)]
                    .randomElement(using: &rng)!
                withUnsafeBytes(of: length.bigEndian) { bytes.replaceSubrange(0..<4, with: $0) }
            case 3: // unknown opcode / flags
                if bytes.count > 5 {
                    bytes[4] = UInt8.random(in: 0...255, using: &rng)
                    if rng.next() % 2 == 0 { bytes[5] = UInt8.random(in: 1...255, using: &rng) }
                }
            case 4: // garbage varints: a run of continuation bytes after the header
                if bytes.count > 7 {
                    for index in 6..<min(bytes.count, 6 + Int.random(in: 1...16, using: &rng)) { bytes[index] = 0xFF }
                }
            case 5: // huge counts: splice a maximal varint into the payload, length fixed up
                var body = Array(bytes.dropFirst(4))
                let position = Int.random(in: min(3, body.count)...body.count, using: &rng)
                body.insert(contentsOf: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], at: position)
                bytes = withUnsafeBytes(of: UInt32(body.count).bigEndian, Array.init) + body
            case 6: // wrong version / wrong magic in a HELLO
                var buffer = ByteBuffer()
                WireCodec.encode(.hello(Hello(minimumVersion: UInt8.random(in: 0...255, using: &rng),
                                              maximumVersion: UInt8.random(in: 0...255, using: &rng))),
                                 requestID: 0, into: &buffer)
                bytes = Array(buffer.readableBytesView)
                if rng.next() % 2 == 0 { bytes[7 + Int(rng.next() % 4)] ^= 0x20 }
            default: // random bit flips, length kept
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    guard bytes.count > 4 else { break }
                    bytes[Int.random(in: 4..<bytes.count, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
            }
            for outcome in Self.run(bytes, maximumFrameSize: 1 << 20) {
                switch outcome {
                case .decoded: counts.decoded += 1
                case .needMore: counts.needMore += 1
                case .failed(let code):
                    counts.failed += 1
                    #expect(Self.documentedCodes.contains(code), "undocumented code \(code)")
                }
            }
        }
        // The mix must exercise both paths, or the fuzzer is not testing anything.
        #expect(counts.decoded > 1_000)
        #expect(counts.failed > 10_000)
    }
}
