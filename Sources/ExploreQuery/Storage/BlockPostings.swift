/// Postings of a many-valued column (area) kept per 4,096-slot block: each block lists the values it holds,
/// each with a 64-word bitmap page of its slots in that block.
///
/// A filter ORs the pages of the asked values into the block's buffer (no binary search over a long slot
/// list), and the facet counts a block's values with one popcount pass per page over the block's matches
/// instead of reading every matching row's code. Bulk loads cluster slots by city and area, so a block holds
/// a handful of values and pages stay few (`values per block × 512` bytes). Pages are never freed: a value
/// that leaves a block leaves an empty page, as block summaries are never cleared either.
///
/// Each page also keeps the span of words its slots have touched, outside of which it is all zeros. A value's
/// slots are clustered, so its span is a few words where the page has 64: a block's pages are read in about
/// one block's worth of words in all (a Lisbon search's area facet read 5-40 pages of 64 words per block).
struct BlockPostings {
    /// Per block: the values with a page there, and the page index.
    private(set) var blockEntries: [[(code: UInt32, page: Int32)]] = []
    /// Pages of ``Bitset/blockWords`` words each, back to back.
    private(set) var pages: [UInt64] = []
    /// Per page: the first word and one past the last word that may be non-zero (only ever widened).
    private(set) var spanStart: [UInt8] = []
    private(set) var spanEnd: [UInt8] = []
    /// Per value: one bit per block that may hold it (set on insert, never cleared).
    private(set) var valueBlocks: [[UInt64]] = []

    static let pageWords = Bitset.blockWords

    var memoryBytes: Int {
        var total = pages.capacity * 8 + spanStart.capacity + spanEnd.capacity + blockEntries.capacity * 8
        total += valueBlocks.capacity * 8
        for entries in blockEntries { total += entries.capacity * 8 + 32 }
        for blocks in valueBlocks { total += blocks.capacity * 8 + 32 }
        return total
    }

    /// The words of `page` that may be non-zero, within a block of `n` words.
    @inline(__always)
    func span(ofPage page: Int, within n: Int) -> Range<Int> {
        let start = Int(spanStart[page])
        return start..<Swift.max(start, Swift.min(Int(spanEnd[page]), n))
    }

    /// The page of `code` in `block`, if any.
    @inline(__always)
    func page(block: Int, code: UInt32) -> Int? {
        guard block < blockEntries.count else { return nil }
        for entry in blockEntries[block] where entry.code == code { return Int(entry.page) }
        return nil
    }

    mutating func insert(_ slot: Int, code: UInt32) {
        let block = slot >> (6 + Bitset.blockShift)
        if block >= blockEntries.count {
            blockEntries.append(contentsOf: repeatElement([], count: block + 1 - blockEntries.count))
        }
        let page: Int
        if let existing = self.page(block: block, code: code) {
            page = existing
        } else {
            page = pages.count / Self.pageWords
            pages.append(contentsOf: repeatElement(0, count: Self.pageWords))
            spanStart.append(UInt8(Self.pageWords))
            spanEnd.append(0)
            blockEntries[block].append((code, Int32(page)))
        }
        let word = (slot >> 6) & (Self.pageWords - 1)
        pages[page * Self.pageWords + word] |= 1 &<< UInt64(slot & 63)
        spanStart[page] = Swift.min(spanStart[page], UInt8(word))
        spanEnd[page] = Swift.max(spanEnd[page], UInt8(word + 1))
        let value = Int(code)
        if value >= valueBlocks.count {
            valueBlocks.append(contentsOf: repeatElement([], count: value + 1 - valueBlocks.count))
        }
        if block >> 6 >= valueBlocks[value].count {
            valueBlocks[value].append(contentsOf: repeatElement(0, count: (block >> 6) + 1 - valueBlocks[value].count))
        }
        valueBlocks[value][block >> 6] |= 1 &<< UInt64(block & 63)
    }

    mutating func remove(_ slot: Int, code: UInt32) {
        let block = slot >> (6 + Bitset.blockShift)
        guard let page = self.page(block: block, code: code) else { return }
        pages[page * Self.pageWords + ((slot >> 6) & (Self.pageWords - 1))] &= ~(1 &<< UInt64(slot & 63))
    }

    /// Whether `slot` is in the posting of `code` (tests).
    func contains(_ slot: Int, code: UInt32) -> Bool {
        guard let page = self.page(block: slot >> (6 + Bitset.blockShift), code: code) else { return false }
        return pages[page * Self.pageWords + ((slot >> 6) & (Self.pageWords - 1))] & (1 &<< UInt64(slot & 63)) != 0
    }
}
