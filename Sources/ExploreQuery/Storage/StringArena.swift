#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-slot strings packed into one UTF-8 byte buffer with an offset and length per slot.
///
/// Titles and image URLs are unique per listing, so dictionary encoding would not help; one arena avoids an
/// object (and its header) per string. A replaced or deleted string leaves garbage, reclaimed by a rewrite
/// (``rewritten()``) once it outweighs the live bytes or the spare capacity runs low; the owner decides when (see
/// ``ExploreIndex/apply(_:)``), as a rewrite copies every live string.
struct StringArena {
    private(set) var bytes: [UInt8] = []
    /// Offset and length of each slot's string, side by side: reading or comparing a slot's string then costs
    /// one cache miss for its span instead of one per column.
    private var spans: [Span] = []
    private var garbage = 0

    /// Where a slot's string lies in `bytes`; a length of `nilLength` marks "no string" (nil).
    struct Span {
        var offset: UInt32
        var length: UInt32
    }

    private static let nilLength = UInt32.max

    var memoryBytes: Int { bytes.capacity + spans.capacity * MemoryLayout<Span>.stride }

    /// Makes room for `slots` more slots and `bytes` more bytes of text at once (a bulk load knows both up
    /// front, and adds room for the rows that follow it): no regrowth copies.
    mutating func reserve(slots: Int, bytes count: Int) {
        spans.reserveCapacity(spans.count + slots)
        bytes.reserveCapacity(bytes.count + count)
    }

    /// Makes room for `count` slots in all, leaving the text buffer alone.
    mutating func reserve(slots count: Int) { spans.reserveCapacity(count) }

    mutating func ensureSlots(_ count: Int) {
        if spans.count < count {
            spans.append(contentsOf: repeatElement(Span(offset: 0, length: Self.nilLength), count: count - spans.count))
        }
    }

    mutating func set(_ slot: Int, _ value: String?) {
        clear(slot)
        guard var text = value else { return }
        text.withUTF8 { utf8 in
            spans[slot] = Span(offset: UInt32(bytes.count), length: UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func clear(_ slot: Int) {
        let length = spans[slot].length
        if length != Self.nilLength {
            garbage += Int(length)
            spans[slot].length = Self.nilLength
        }
    }

    /// Whether the arena should be rewritten before more strings are appended: its garbage outweighs its live
    /// bytes, or its spare capacity is nearly used up, so an append would soon copy the whole arena to grow it.
    /// Small arenas (under a megabyte) are never worth it.
    var wantsRewrite: Bool {
        guard bytes.count > 1 << 20 else { return false }
        return garbage > bytes.count / 2 || bytes.capacity - bytes.count < bytes.capacity / 32
    }

    func get(_ slot: Int) -> String? { string(spans[slot]) }

    /// Where `slot`'s string lies in the arena (see ``string(_:)``).
    @inline(__always)
    func span(_ slot: Int) -> Span { spans[slot] }

    /// Reads the first and last byte of every span's string and returns a value depending on all of them.
    ///
    /// Why: building a page's strings reads each string's bytes for the first time inside `String(decoding:)`,
    /// between allocations, so their cache misses queue one after another. Reading them in one short loop
    /// first lets the misses overlap; the caller keeps the result alive so the reads are not removed.
    func touch(_ spans: [Span]) -> UInt8 {
        bytes.withUnsafeBufferPointer { buffer in
            var touched: UInt8 = 0
            for span in spans where span.length != Self.nilLength && span.length > 0 {
                let start = Int(span.offset)
                touched &+= buffer[start] ^ buffer[start + Int(span.length) - 1]
            }
            return touched
        }
    }

    /// The string of a span from ``span(_:)``.
    func string(_ span: Span) -> String? {
        if span.length == Self.nilLength { return nil }
        let start = Int(span.offset)
        return bytes.withUnsafeBufferPointer { buffer in
            String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<start + Int(span.length)]), as: UTF8.self)
        }
    }

    func equals(_ slot: Int, _ value: String?) -> Bool {
        let span = spans[slot]
        let length = span.length
        guard let value else { return length == Self.nilLength }
        if length == Self.nilLength { return false }
        // Lengths first: a native string knows its UTF-8 count without reading its bytes.
        if value.utf8.count != Int(length) { return false }
        var copy = value
        let start = Int(span.offset)
        return copy.withUTF8 { utf8 in
            bytes.withUnsafeBufferPointer { buffer in
                // memcmp: `elementsEqual` compared byte by byte and showed up in upsert profiles.
                utf8.isEmpty || memcmp(utf8.baseAddress!, buffer.baseAddress! + start, utf8.count) == 0
            }
        }
    }

    /// A copy holding the live strings only, in slot order, with a quarter of their size spare for the strings
    /// appended after it. Reads the arena only, so it may run while others read it too.
    func rewritten() -> StringArena {
        var copy = StringArena()
        copy.spans = spans
        let live = bytes.count - garbage
        copy.bytes.reserveCapacity(live + live / 4 + 64)
        bytes.withUnsafeBufferPointer { old in
            for slot in copy.spans.indices where copy.spans[slot].length != Self.nilLength {
                let start = Int(copy.spans[slot].offset)
                copy.spans[slot].offset = UInt32(copy.bytes.count)
                copy.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: old[start..<start + Int(copy.spans[slot].length)]))
            }
        }
        return copy
    }
}

/// Dictionary encoding for low-cardinality text columns (status, city, area): each distinct value gets a small
/// code for the life of the store. Codes are never reused, so postings indexed by code stay valid.
///
/// The codes are also kept in the values' order, so facet entries with equal counts are ordered by comparing
/// integers: a large city's area facet has 160 values, many with equal counts, and sorting them compared strings.
struct StringDictionary {
    private(set) var values: [String] = []
    private var codes: [String: UInt32] = [:]
    /// Every code, in ascending order of its value.
    private var ordered: [UInt32] = []
    /// Each code's position in `ordered`.
    private var rank: [UInt32] = []

    func code(of value: String) -> UInt32? { codes[value] }

    mutating func encode(_ value: String) -> UInt32 {
        if let code = codes[value] { return code }
        let code = UInt32(values.count)
        values.append(value)
        codes[value] = code
        // New values are rare (a new city or area), and there are a few hundred: shifting ranks costs nothing.
        var low = 0
        var high = ordered.count
        while low < high {
            let mid = (low + high) / 2
            if values[Int(ordered[mid])] < value { low = mid + 1 } else { high = mid }
        }
        ordered.insert(code, at: low)
        rank.append(0)
        for position in low..<ordered.count { rank[Int(ordered[position])] = UInt32(position) }
        return code
    }

    /// The non-zero `counts` (indexed by code) as facet entries in facet order (see ``FacetCounter/ordered(_:)``):
    /// descending count, then ascending value.
    func facetEntries(_ counts: [Int]) -> [(value: FacetValue, count: Int)] {
        // One integer per entry: the count's complement above the value's rank.
        var keys: [UInt64] = []
        for (code, count) in counts.enumerated() where count > 0 {
            keys.append(UInt64(UInt32.max - UInt32(clamping: count)) << 32 | UInt64(rank[code]))
        }
        keys.sort()
        return keys.map { key in
            (.text(values[Int(ordered[Int(key & 0xffff_ffff)])]), Int(UInt32.max - UInt32(key >> 32)))
        }
    }

    var memoryBytes: Int {
        var total = values.capacity * 16 + codes.capacity * 24 + (ordered.capacity + rank.capacity) * 4
        for value in values where value.utf8.count > 15 { total += value.utf8.count * 2 }
        return total
    }
}
