/// Slots kept in `(key, id)` order, as a list of small sorted chunks (a flat, two-level B-tree).
///
/// Sorted paging walks this order (forwards, or backwards by groups of equal keys for descending orders,
/// so ids stay ascending on ties) and tests each slot against the query's match bitmap until a page is
/// full: a page costs about `limit × rows / matches` steps instead of sorting every match. An insert or
/// remove touches one chunk of at most ``maximumChunk`` entries (a short memmove), which keeps upserts
/// cheap; a change batch applies its entries sorted, in one ascending pass; a bulk load builds chunks directly.
/// Ids are stored inline because prices repeat a lot: comparing ties through the id column would cost a cache
/// miss per step.
struct SortedSlotList {
    struct Chunk {
        var keys: [Int64]
        var ids: [Int64]
        var slots: [UInt32]
    }

    /// A position: chunk index and index inside the chunk.
    struct Position {
        var chunk: Int
        var index: Int
    }

    private(set) var chunks: [Chunk] = []
    /// The last `(key, id)` of each chunk, so routing a key is a binary search over two flat arrays.
    private var lastKeys: [Int64] = []
    private var lastIDs: [Int64] = []
    private(set) var count = 0

    /// Why 64: a price edit removes one entry and inserts another, each a scan of its chunk's keys and a move of
    /// part of its three columns, all rarely cached. At a million rows, halving the chunks from 128 entries took
    /// change batches from 473,000-493,000 to 516,000-532,000 changes/s applied (three runs each), with the
    /// search mix's p99 within the noise; 48 and 96 gave 508,000 and 514,000 in one run each.
    static let maximumChunk = 64

    var memoryBytes: Int {
        var total = chunks.capacity * MemoryLayout<Chunk>.stride + lastKeys.capacity * 8 + lastIDs.capacity * 8
        for chunk in chunks { total += chunk.keys.capacity * 8 + chunk.ids.capacity * 8 + chunk.slots.capacity * 4 + 96 }
        return total
    }

    init() {}

    /// Builds the list from entries already sorted by `(key, id)`.
    init(sorted keys: [Int64], ids: [Int64], slots: [UInt32]) {
        var start = 0
        let fill = Self.maximumChunk * 7 / 8
        while start < keys.count {
            let end = Swift.min(start + fill, keys.count)
            var chunk = Self.emptyChunk()
            chunk.keys.append(contentsOf: keys[start..<end])
            chunk.ids.append(contentsOf: ids[start..<end])
            chunk.slots.append(contentsOf: slots[start..<end])
            chunks.append(chunk)
            lastKeys.append(keys[end - 1])
            lastIDs.append(ids[end - 1])
            start = end
        }
        count = keys.count
    }

    private static func emptyChunk() -> Chunk {
        var chunk = Chunk(keys: [], ids: [], slots: [])
        chunk.keys.reserveCapacity(maximumChunk + 1)
        chunk.ids.reserveCapacity(maximumChunk + 1)
        chunk.slots.reserveCapacity(maximumChunk + 1)
        return chunk
    }

    @inline(__always)
    private static func before(_ key: Int64, _ id: Int64, _ otherKey: Int64, _ otherID: Int64, strict: Bool) -> Bool {
        // strict: is (key, id) <= (otherKey, otherID)?  else: is (key, id) < (otherKey, otherID)?
        key < otherKey || (key == otherKey && (strict ? id <= otherID : id < otherID))
    }

    /// The first position holding an entry `> (key, id)` (strict) or `>= (key, id)`.
    func seek(key: Int64, id: Int64, strict: Bool) -> Position {
        var low = 0
        var high = lastKeys.count
        while low < high {
            let mid = (low + high) / 2
            if Self.before(lastKeys[mid], lastIDs[mid], key, id, strict: strict) { low = mid + 1 } else { high = mid }
        }
        guard low < chunks.count else { return Position(chunk: chunks.count, index: 0) }
        let chunk = chunks[low]
        let index = chunk.keys.withUnsafeBufferPointer { keys in
            chunk.ids.withUnsafeBufferPointer { ids in
                var a = 0
                var b = keys.count
                while a < b {
                    let mid = (a + b) / 2
                    if Self.before(keys[mid], ids[mid], key, id, strict: strict) { a = mid + 1 } else { b = mid }
                }
                return a
            }
        }
        return Position(chunk: low, index: index)
    }

    private mutating func refreshLast(_ index: Int) {
        lastKeys[index] = chunks[index].keys[chunks[index].keys.count - 1]
        lastIDs[index] = chunks[index].ids[chunks[index].ids.count - 1]
    }

    /// An entry to insert or remove, ordered by `(key, id)` like the list.
    struct Entry: Comparable {
        var key: Int64
        var id: Int64
        var slot: UInt32

        static func < (a: Entry, b: Entry) -> Bool { a.key < b.key || (a.key == b.key && a.id < b.id) }
        static func == (a: Entry, b: Entry) -> Bool { a.key == b.key && a.id == b.id }
    }

    /// The first chunk at or after `start` whose last entry is `>= (key, id)`, or `chunks.count`.
    ///
    /// A galloping search from `start`: a sorted batch routes each entry from the previous entry's chunk in a
    /// few probes of nearby chunks, instead of a fresh binary search over every chunk's last entry.
    @inline(__always)
    private func route(_ key: Int64, _ id: Int64, from start: Int) -> Int {
        lastKeys.withUnsafeBufferPointer { keys in
            lastIDs.withUnsafeBufferPointer { ids in
                let n = keys.count
                // Every chunk before `low` ends before (key, id); chunk `probe` (when < n) does not.
                var low = start
                var probe = start
                var step = 1
                while probe < n && Self.before(keys[probe], ids[probe], key, id, strict: false) {
                    low = probe + 1
                    probe += step
                    step <<= 1
                }
                var high = Swift.min(probe, n)
                while low < high {
                    let mid = (low + high) >> 1
                    if Self.before(keys[mid], ids[mid], key, id, strict: false) { low = mid + 1 } else { high = mid }
                }
                return low
            }
        }
    }

    /// The first index in chunk `c` holding an entry `>= (key, id)`: the entries with smaller keys counted in
    /// one pass (see `countBelowScanning`), then the ties on `key` stepped over by id.
    @inline(__always)
    private func index(inChunk c: Int, _ key: Int64, _ id: Int64) -> Int {
        // The three columns' headers are separate, usually uncached lines: reading all three counts here, where no
        // load waits for another, overlaps those misses instead of meeting them one by one in the memmoves.
        precondition(chunks[c].keys.count == chunks[c].ids.count && chunks[c].ids.count == chunks[c].slots.count,
                     "chunk columns out of step")
        return chunks[c].keys.withUnsafeBufferPointer { keys in
            chunks[c].ids.withUnsafeBufferPointer { ids in
                var at = keys.countBelowScanning(key, orEqual: false)
                while at < keys.count && keys[at] == key && ids[at] < id { at += 1 }
                return at
            }
        }
    }

    /// One batch's share of this list: entries to remove and entries to insert, in any order.
    struct Changes {
        var removals: [Entry] = []
        var insertions: [Entry] = []
    }

    /// Applies a batch's changes: removals first (an id moving within the list leaves its old key before it
    /// takes the new one), then insertions, each sorted and applied in one ascending pass.
    mutating func apply(_ changes: inout Changes) {
        if !changes.removals.isEmpty {
            changes.removals.sort()
            remove(sorted: changes.removals)
        }
        if !changes.insertions.isEmpty {
            changes.insertions.sort()
            insert(sorted: changes.insertions)
        }
    }

    /// Inserts `entries`, sorted by `(key, id)`, none of them present yet: one ascending pass that routes each
    /// entry onwards from the previous one's chunk.
    mutating func insert(sorted entries: [Entry]) {
        var c = 0
        for entry in entries {
            count += 1
            if chunks.isEmpty {
                var chunk = Self.emptyChunk()
                chunk.keys.append(entry.key)
                chunk.ids.append(entry.id)
                chunk.slots.append(entry.slot)
                chunks.append(chunk)
                lastKeys.append(entry.key)
                lastIDs.append(entry.id)
                continue
            }
            // Past every chunk's last entry: append to the last chunk.
            c = Swift.min(route(entry.key, entry.id, from: c), chunks.count - 1)
            let at = index(inChunk: c, entry.key, entry.id)
            chunks[c].keys.insert(entry.key, at: at)
            chunks[c].ids.insert(entry.id, at: at)
            chunks[c].slots.insert(entry.slot, at: at)
            if chunks[c].keys.count > Self.maximumChunk {
                split(c)
                refreshLast(c + 1)
            }
            refreshLast(c)
        }
    }

    private mutating func split(_ index: Int) {
        let half = chunks[index].keys.count / 2
        var upper = Self.emptyChunk()
        upper.keys.append(contentsOf: chunks[index].keys[half...])
        upper.ids.append(contentsOf: chunks[index].ids[half...])
        upper.slots.append(contentsOf: chunks[index].slots[half...])
        chunks[index].keys.removeSubrange(half...)
        chunks[index].ids.removeSubrange(half...)
        chunks[index].slots.removeSubrange(half...)
        chunks.insert(upper, at: index + 1)
        lastKeys.insert(0, at: index + 1)
        lastIDs.insert(0, at: index + 1)
    }

    /// Removes the entries `(key, id)` of `entries`, sorted by `(key, id)`, in one ascending pass (entries not
    /// present are ignored; `slot` is not compared).
    mutating func remove(sorted entries: [Entry]) {
        var c = 0
        for entry in entries {
            c = route(entry.key, entry.id, from: c)
            guard c < chunks.count else { return }
            let at = index(inChunk: c, entry.key, entry.id)
            guard at < chunks[c].keys.count, chunks[c].keys[at] == entry.key, chunks[c].ids[at] == entry.id else {
                continue
            }
            count -= 1
            if chunks[c].keys.count == 1 {
                chunks.remove(at: c)
                lastKeys.remove(at: c)
                lastIDs.remove(at: c)
            } else {
                chunks[c].keys.remove(at: at)
                chunks[c].ids.remove(at: at)
                chunks[c].slots.remove(at: at)
                refreshLast(c)
            }
        }
    }

    /// Calls `body(slot)` for entries after `(key, id)` (or from the start) in ascending order until it
    /// returns false. - Returns: false when `body` stopped the walk.
    @inline(__always)
    func walkAscending(after start: (key: Int64, id: Int64)?, _ body: (UInt32) -> Bool) -> Bool {
        var position = Position(chunk: 0, index: 0)
        if let start { position = seek(key: start.key, id: start.id, strict: true) }
        var chunkIndex = position.chunk
        var at = position.index
        while chunkIndex < chunks.count {
            let stopped = chunks[chunkIndex].slots.withUnsafeBufferPointer { slots in
                var i = at
                while i < slots.count {
                    if !body(slots[i]) { return true }
                    i += 1
                }
                return false
            }
            if stopped { return false }
            chunkIndex += 1
            at = 0
        }
        return true
    }

    /// Calls `body(slot)` in `(key descending, id ascending)` order for entries after `(key, id)` in that
    /// order (or from the start) until it returns false. - Returns: false when `body` stopped the walk.
    func walkDescending(after start: (key: Int64, id: Int64)?, _ body: (UInt32) -> Bool) -> Bool {
        var back: Position?
        if let start {
            // The rest of the cursor's own key group, ids ascending.
            var p = seek(key: start.key, id: start.id, strict: true)
            while p.chunk < chunks.count {
                if chunks[p.chunk].keys[p.index] != start.key { break }
                if !body(chunks[p.chunk].slots[p.index]) { return false }
                p = next(p)
            }
            back = previous(seek(key: start.key, id: Int64.min, strict: false))
        } else {
            back = chunks.isEmpty ? nil : Position(chunk: chunks.count - 1, index: chunks[chunks.count - 1].keys.count - 1)
        }
        // Then earlier groups, each emitted front to back: within a chunk straight from its buffers (most
        // groups are one entry), a group reaching into the previous chunk through positions.
        guard var chunkIndex = back?.chunk, var last = back?.index else { return true }
        while chunkIndex >= 0 {
            var spansChunks = false
            let stopped = chunks[chunkIndex].keys.withUnsafeBufferPointer { keys in
                chunks[chunkIndex].slots.withUnsafeBufferPointer { slots in
                    while last >= 0 {
                        let key = keys[last]
                        var first = last
                        while first > 0 && keys[first - 1] == key { first -= 1 }
                        if first == 0 && chunkIndex > 0 && lastKeys[chunkIndex - 1] == key {
                            spansChunks = true
                            return false
                        }
                        for i in first...last where !body(slots[i]) { return true }
                        last = first - 1
                    }
                    return false
                }
            }
            if stopped { return false }
            if spansChunks {
                let end = Position(chunk: chunkIndex, index: last)
                let key = chunks[chunkIndex].keys[last]
                var first = Position(chunk: chunkIndex, index: 0)
                var before = previous(first)
                while let candidate = before, chunks[candidate.chunk].keys[candidate.index] == key {
                    first = candidate
                    before = previous(candidate)
                }
                var p = first
                while true {
                    if !body(chunks[p.chunk].slots[p.index]) { return false }
                    if p.chunk == end.chunk && p.index == end.index { break }
                    p = next(p)
                }
                guard let resume = before else { return true }
                chunkIndex = resume.chunk
                last = resume.index
            } else {
                chunkIndex -= 1
                if chunkIndex >= 0 { last = chunks[chunkIndex].keys.count - 1 }
            }
        }
        return true
    }

    /// Calls `body(slot)` for the entries with exactly `key`, ids ascending, until it returns false.
    func walkDescending(group key: Int64, _ body: (UInt32) -> Bool) -> Bool {
        var p = seek(key: key, id: Int64.min, strict: false)
        while p.chunk < chunks.count, chunks[p.chunk].keys[p.index] == key {
            if !body(chunks[p.chunk].slots[p.index]) { return false }
            p = next(p)
        }
        return true
    }

    @inline(__always)
    private func next(_ p: Position) -> Position {
        if p.index + 1 < chunks[p.chunk].keys.count { return Position(chunk: p.chunk, index: p.index + 1) }
        return Position(chunk: p.chunk + 1, index: 0)
    }

    @inline(__always)
    private func previous(_ p: Position) -> Position? {
        if p.chunk < chunks.count && p.index > 0 { return Position(chunk: p.chunk, index: p.index - 1) }
        if p.chunk == 0 { return nil }
        return Position(chunk: p.chunk - 1, index: chunks[p.chunk - 1].keys.count - 1)
    }
}
