import DemoData
import ExploreQuery
@testable import Projector
import Testing

/// The cache bootstrap's byte-level COPY decoder against the plain one (split into strings, then decode).
struct CopyDecoderTests {
    /// Random rows with every escape COPY writes, NULLs, negative and extreme integers, non-ASCII text: both
    /// decoders return the same listing, or both reject the line.
    @Test func fastDecoderMatchesTheFieldSplitter() throws {
        var random = SplitMix64(seed: 77)
        let pieces = ["a", "Ação", "東京", "🏠", "\\t", "\\n", "\\\\", "\\r", "\\N", " ", "x y", "\\b", "\\v", "\\f"]
        func text() -> String {
            (0..<Int(random.next() % 5)).map { _ in pieces[Int(random.next() % UInt64(pieces.count))] }.joined()
        }
        func integer() -> String {
            switch random.next() % 8 {
            case 0: "\\N"
            case 1: String(Int64.min)
            case 2: String(Int64.max)
            case 3: "-\(random.next() % 1_000)"
            case 4: "9223372036854775808"  // one past Int64.max: rejected by both
            case 5: "12a"  // not an integer: rejected by both
            default: String(random.next() % 10_000_000)
            }
        }
        var agreed = 0
        for _ in 0..<5_000 {
            let fields = [
                integer(), random.next() % 7 == 0 ? "house" : (random.next() % 2 == 0 ? "existing" : "development"),
                text(), text(), integer(), integer(), integer(), String(random.next() % 40), "\\N", text(), text(),
                random.next() % 5 == 0 ? "\\N" : text(), integer(),
            ]
            let count = random.next() % 20 == 0 ? 12 : 13
            let line = Array((fields.prefix(Int(count)).joined(separator: "\t") + "\n").utf8)
            let fast = line.withUnsafeBytes { bytes in
                Result { () throws(ProjectorError) -> ExploreListing in try ProjectionRowDecoder.decode(copyLine: bytes) }
            }
            let plain = line.withUnsafeBytes { bytes in
                Result { () throws(ProjectorError) -> ExploreListing in
                    try ProjectionRowDecoder.decode(ProjectionRowDecoder.splitCopyLine(bytes))
                }
            }
            switch (fast, plain) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "line \(String(decoding: line, as: UTF8.self))")
                agreed += 1
            case (.failure, .failure):
                break
            default:
                Issue.record("decoders disagree on \(String(decoding: line, as: UTF8.self)): \(fast) vs \(plain)")
            }
        }
        #expect(agreed > 100)
    }
}
