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

    var memoryBytes: Int { words.capacity * 8 + blocks.capacity * 8 }
}
