/// A growable set of slot numbers, one bit per slot, 64 slots per word.
///
/// Postings and range bitmaps are bitsets over row slots so that filters and facet counts can be evaluated a
/// machine word (64 rows) at a time with AND/OR and popcount. A bitset may be shorter than the store's slot
/// range: missing words read as zero, which keeps growth lazy and cheap.
struct Bitset {
    var words: [UInt64] = []
    /// One bit per block of ``blockWords`` words that may hold set bits (set on insert, never cleared), so
    /// clustered postings (bulk loads group slots by city and area) are read only where they have rows.
    var blocks: [UInt64] = []

    static let blockWords = 64
    static let blockShift = 6

    @inline(__always)
    func contains(_ slot: Int) -> Bool {
        let index = slot >> 6
        return index < words.count && words[index] & (1 &<< UInt64(slot & 63)) != 0
    }

    @inline(__always)
    mutating func insert(_ slot: Int) {
        let index = slot >> 6
        if index >= words.count { grow(toWordCount: index + 1) }
        words[index] |= 1 &<< UInt64(slot & 63)
        let block = index >> Self.blockShift
        if block >> 6 >= blocks.count { blocks.append(contentsOf: repeatElement(0, count: (block >> 6) + 1 - blocks.count)) }
        blocks[block >> 6] |= 1 &<< UInt64(block & 63)
    }

    /// Calls `body(firstWord, endWord)` for every block that may hold set bits, clipped to `wordCount`.
    @inline(__always)
    func forEachBlock(wordCount: Int, _ body: (Int, Int) -> Void) {
        let limit = Swift.min(wordCount, words.count)
        for (index, summary) in blocks.enumerated() {
            var bits = summary
            while bits != 0 {
                let block = index &<< 6 | bits.trailingZeroBitCount
                bits &= bits &- 1
                let start = block &<< Self.blockShift
                if start >= limit { return }
                body(start, Swift.min(start + Self.blockWords, limit))
            }
        }
    }

    /// Number of slots in both `self` and `other` (a query bitmap of at least `wordCount` words).
    func intersectionCount(_ other: [UInt64]) -> Int {
        var total = 0
        words.withUnsafeBufferPointer { mine in
            other.withUnsafeBufferPointer { theirs in
                forEachBlock(wordCount: theirs.count) { start, end in
                    for i in start..<end { total &+= (mine[i] & theirs[i]).nonzeroBitCount }
                }
            }
        }
        return total
    }

    /// `target |= self`, touching only blocks that may hold bits.
    func union(into target: inout [UInt64]) {
        words.withUnsafeBufferPointer { mine in
            target.withUnsafeMutableBufferPointer { out in
                forEachBlock(wordCount: out.count) { start, end in
                    for i in start..<end { out[i] |= mine[i] }
                }
            }
        }
    }

    @inline(__always)
    mutating func remove(_ slot: Int) {
        let index = slot >> 6
        if index < words.count { words[index] &= ~(1 &<< UInt64(slot & 63)) }
    }

    mutating func grow(toWordCount count: Int) {
        guard count > words.count else { return }
        if words.capacity < count { words.reserveCapacity(Swift.max(count, words.capacity + words.capacity / 8 + 16)) }
        words.append(contentsOf: repeatElement(0, count: count - words.count))
    }

    var isEmpty: Bool { !words.contains { $0 != 0 } }

    var memoryBytes: Int { words.capacity * 8 + blocks.capacity * 8 }
}

/// Word-at-a-time operations on query-time bit vectors (plain `[UInt64]` of one fixed length per query).
enum BitOps {
    /// `target |= source` over the common prefix.
    @inline(__always)
    static func formUnion(_ target: inout [UInt64], _ source: [UInt64]) {
        let count = Swift.min(target.count, source.count)
        target.withUnsafeMutableBufferPointer { t in
            source.withUnsafeBufferPointer { s in
                for i in 0..<count { t[i] |= s[i] }
            }
        }
    }

    /// `target &= source`; words past the end of `source` become zero.
    @inline(__always)
    static func formIntersection(_ target: inout [UInt64], _ source: [UInt64]) {
        let count = Swift.min(target.count, source.count)
        target.withUnsafeMutableBufferPointer { t in
            source.withUnsafeBufferPointer { s in
                for i in 0..<count { t[i] &= s[i] }
                for i in count..<t.count { t[i] = 0 }
            }
        }
    }

    /// `target &= ~source`.
    @inline(__always)
    static func subtract(_ target: inout [UInt64], _ source: [UInt64]) {
        let count = Swift.min(target.count, source.count)
        target.withUnsafeMutableBufferPointer { t in
            source.withUnsafeBufferPointer { s in
                for i in 0..<count { t[i] &= ~s[i] }
            }
        }
    }

    /// A copy of `source` padded or cut to `count` words.
    static func copy(_ source: [UInt64], count: Int) -> [UInt64] {
        if source.count == count { return source }
        if source.count > count { return Array(source[0..<count]) }
        var result = source
        result.append(contentsOf: repeatElement(0, count: count - source.count))
        return result
    }

    static func popcount(_ words: [UInt64]) -> Int {
        words.withUnsafeBufferPointer { w in
            var total = 0
            for word in w { total &+= word.nonzeroBitCount }
            return total
        }
    }

    /// Number of bits set in both.
    static func intersectionCount(_ a: [UInt64], _ b: [UInt64]) -> Int {
        let count = Swift.min(a.count, b.count)
        return a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                var total = 0
                for i in 0..<count { total &+= (x[i] & y[i]).nonzeroBitCount }
                return total
            }
        }
    }

    /// Calls `body` with every set slot in ascending order.
    @inline(__always)
    static func forEachSlot(_ words: [UInt64], _ body: (Int) -> Void) {
        words.withUnsafeBufferPointer { w in
            for i in 0..<w.count {
                var word = w[i]
                while word != 0 {
                    body(i &<< 6 | word.trailingZeroBitCount)
                    word &= word &- 1
                }
            }
        }
    }
}
