/// A sorted multiset of integers that answers "how many are below x" in two binary searches.
///
/// The group cube keeps one per group for the price ends, so a price filter's count over a group is two
/// rank queries instead of a pass over the group's rows. Keys live in small sorted chunks (a flat, two-level
/// B-tree) with the number of keys before each chunk kept alongside: an insert or remove is one short memmove
/// plus an update of the following chunks' prefix counts, a rank query never sums chunks.
struct RankedKeys {
    private(set) var chunks: [[Int64]] = []
    /// The last key of each chunk.
    private var lasts: [Int64] = []
    /// Keys in the chunks before each chunk.
    private var before: [Int32] = []
    private(set) var count = 0
    /// The smallest and the largest key (meaningless when empty), kept inline: a range count over a group that
    /// lies wholly inside or outside the range then reads none of its arrays. A city facet under a price filter
    /// counts hundreds of groups, and many of them (other cities' price levels, other bedroom counts) are
    /// decided this way, where each search read a few uncached lines of the group's chunk ends and chunks.
    private(set) var minimum: Int64 = 0
    private(set) var maximum: Int64 = 0

    /// Small chunks: an update scans its chunk (see `updatePosition`) and moves part of it, and a rank query's
    /// extra step over more chunk ends stays within one cached array.
    static let maximumChunk = 64

    init() {}

    /// Builds the multiset from keys already in ascending order.
    init(sorted keys: [Int64]) {
        let fill = Self.maximumChunk * 3 / 4
        var start = 0
        while start < keys.count {
            let end = Swift.min(start + fill, keys.count)
            chunks.append(Array(keys[start..<end]))
            lasts.append(keys[end - 1])
            before.append(Int32(start))
            start = end
        }
        count = keys.count
        if let first = keys.first, let last = keys.last { (minimum, maximum) = (first, last) }
    }

    var memoryBytes: Int {
        var total = chunks.capacity * 8 + lasts.capacity * 8 + before.capacity * 4
        for chunk in chunks { total += chunk.capacity * 8 + 32 }
        return total
    }

    /// The first chunk whose last key is `>= key` (strict: `> key`), or `chunks.count`.
    @inline(__always)
    private func chunkIndex(_ key: Int64, strict: Bool) -> Int {
        lasts.withUnsafeBufferPointer { $0.countBelow(key, orEqual: strict) }
    }

    @inline(__always)
    private static func position(in chunk: [Int64], _ key: Int64, strict: Bool) -> Int {
        chunk.withUnsafeBufferPointer { $0.countBelow(key, orEqual: strict) }
    }

    /// `position(in:_:strict:)` for updates, by a scan (see `countBelowScanning`): an update's chunk is rarely
    /// cached, and a scan waits for one cache miss where a binary search waits for one per probe.
    @inline(__always)
    private static func updatePosition(in chunk: [Int64], _ key: Int64, strict: Bool) -> Int {
        chunk.withUnsafeBufferPointer { $0.countBelowScanning(key, orEqual: strict) }
    }

    /// Number of keys `< key`.
    func count(below key: Int64) -> Int { rank(key, strict: false) }

    /// Number of keys `<= key`.
    func count(notAbove key: Int64) -> Int { rank(key, strict: true) }

    /// Number of keys in `low...high` (0 when `low > high`). One pass for both ends: when they fall into the
    /// same chunk (always in a small group), the chunk's prefix count is not read and its keys are read once.
    func count(from low: Int64, through high: Int64) -> Int {
        guard low <= high, count > 0 else { return 0 }
        return count(from: low, through: high, firstChunk: chunkIndex(low, strict: false),
                     lastChunk: chunkIndex(high, strict: true))
    }

    /// `count(from:through:)` of each of `sets[indices]`, with `low <= high`. The chunk searches of every set run
    /// first, then the chunk reads. Why: the cube counts a price range in hundreds of groups for one city facet,
    /// each set's lookups are cache misses, and while one set's probes wait on each other, no set's wait on
    /// another's: in short passes over all sets the processor keeps several sets' misses in flight, where one
    /// set at a time (search, then read its chunks) left it waiting on one.
    static func counts(from low: Int64, through high: Int64, of sets: [RankedKeys], at indices: [Int]) -> [Int] {
        var counts = [Int](repeating: 0, count: indices.count)
        sets.withUnsafeBufferPointer { sets in
            // The sets the range neither misses nor covers, as positions in `indices`.
            var searched: [Int] = []
            for (i, s) in indices.enumerated() {
                let set = sets[s]
                guard set.count > 0, set.minimum <= high, set.maximum >= low else { continue }
                if low <= set.minimum && set.maximum <= high { counts[i] = set.count } else { searched.append(i) }
            }
            var firsts = [Int](repeating: 0, count: searched.count)
            var lasts = firsts
            for (k, i) in searched.enumerated() { firsts[k] = sets[indices[i]].chunkIndex(low, strict: false) }
            for (k, i) in searched.enumerated() { lasts[k] = sets[indices[i]].chunkIndex(high, strict: true) }
            for (k, i) in searched.enumerated() {
                counts[i] = sets[indices[i]].count(from: low, through: high, firstChunk: firsts[k], lastChunk: lasts[k])
            }
        }
        return counts
    }

    /// `count(from:through:)` once the chunks of both ends are known.
    @inline(__always)
    private func count(from low: Int64, through high: Int64, firstChunk first: Int, lastChunk last: Int) -> Int {
        guard first < chunks.count else { return 0 }
        if first == last {
            return chunks[first].withUnsafeBufferPointer {
                $0.countBelow(high, orEqual: true) - $0.countBelow(low, orEqual: false)
            }
        }
        let upTo = last < chunks.count ? Int(before[last]) + Self.position(in: chunks[last], high, strict: true) : count
        return upTo - Int(before[first]) - Self.position(in: chunks[first], low, strict: false)
    }

    @inline(__always)
    private func rank(_ key: Int64, strict: Bool) -> Int {
        guard count > 0, strict ? key >= minimum : key > minimum else { return 0 }
        if strict ? key >= maximum : key > maximum { return count }
        let c = chunkIndex(key, strict: strict)
        guard c < chunks.count else { return count }
        return Int(before[c]) + Self.position(in: chunks[c], key, strict: strict)
    }

    mutating func insert(_ key: Int64) {
        (minimum, maximum) = count == 0 ? (key, key) : (Swift.min(minimum, key), Swift.max(maximum, key))
        count += 1
        if chunks.isEmpty {
            chunks.append([key])
            lasts.append(key)
            before.append(0)
            return
        }
        let c = place(key)
        for i in (c + 1)..<before.count { before[i] += 1 }
        if chunks[c].count > Self.maximumChunk { split(c) }
    }

    /// Puts `key` into the chunk it sorts into (there is one) and returns that chunk; its prefix count, the later
    /// chunks' and a split are the caller's.
    @inline(__always)
    private mutating func place(_ key: Int64) -> Int {
        let c = Swift.min(chunkIndex(key, strict: true), chunks.count - 1)
        let at = Self.updatePosition(in: chunks[c], key, strict: true)
        chunks[c].insert(key, at: at)
        if at == chunks[c].count - 1 { lasts[c] = key }
        return c
    }

    /// The chunk and index of one occurrence of `key`, if present.
    @inline(__always)
    private func find(_ key: Int64) -> (chunk: Int, index: Int)? {
        let c = chunkIndex(key, strict: false)
        guard c < chunks.count else { return nil }
        let at = Self.updatePosition(in: chunks[c], key, strict: false)
        return at < chunks[c].count && chunks[c][at] == key ? (c, at) : nil
    }

    private mutating func split(_ c: Int) {
        let half = chunks[c].count / 2
        let upper = Array(chunks[c][half...])
        chunks[c].removeSubrange(half...)
        chunks.insert(upper, at: c + 1)
        lasts[c] = chunks[c][half - 1]
        lasts.insert(upper[upper.count - 1], at: c + 1)
        before.insert(before[c] + Int32(half), at: c + 1)
    }

    /// Removes one occurrence of `key`. - Returns: false when `key` is not present.
    @discardableResult
    mutating func remove(_ key: Int64) -> Bool {
        guard let (c, at) = find(key) else { return false }
        count -= 1
        defer { if key == minimum || key == maximum { refreshExtremes() } }
        if chunks[c].count == 1 {
            chunks.remove(at: c)
            lasts.remove(at: c)
            before.remove(at: c)
            for i in c..<before.count { before[i] -= 1 }
            return true
        }
        chunks[c].remove(at: at)
        if at == chunks[c].count { lasts[c] = chunks[c][at - 1] }
        for i in (c + 1)..<before.count { before[i] -= 1 }
        return true
    }

    /// Reads `minimum` and `maximum` back from the chunks, after one of them was removed.
    private mutating func refreshExtremes() {
        guard let first = chunks.first?.first, let last = lasts.last else { return }
        (minimum, maximum) = (first, last)
    }

    /// Replaces one occurrence of `old` with `new` (nothing when `old` is not present). Only the prefix counts of
    /// the chunks between the two keys' chunks change (none when `new` stays in `old`'s chunk, as a price edit
    /// of a few percent often does), where a remove and an insert would each update every later chunk's.
    mutating func replace(_ old: Int64, with new: Int64) {
        guard let (c, at) = find(old) else { return }
        if chunks[c].count == 1 {
            // The chunk would empty: the general path drops it.
            remove(old)
            insert(new)
            return
        }
        chunks[c].remove(at: at)
        if at == chunks[c].count { lasts[c] = chunks[c][at - 1] }
        let d = place(new)  // once `old` is gone
        if c < d {
            for i in (c + 1)...d { before[i] -= 1 }
        } else if d < c {
            for i in (d + 1)...c { before[i] += 1 }
        }
        if chunks[d].count > Self.maximumChunk { split(d) }
        if old == minimum || old == maximum {
            refreshExtremes()
        } else {
            (minimum, maximum) = (Swift.min(minimum, new), Swift.max(maximum, new))
        }
    }

    /// Every key in ascending order (tests).
    var elements: [Int64] { chunks.flatMap { $0 } }
}
