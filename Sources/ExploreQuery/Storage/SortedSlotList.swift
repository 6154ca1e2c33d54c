/// Slots kept in `(key, id)` order, as a list of small sorted chunks (a flat, two-level B-tree).
///
/// Sorted paging walks this order and tests each slot against the query's match bitmap until a page is full,
/// so a page costs about `limit × rows / matches` steps instead of sorting every match. An insert or remove
/// touches one chunk of at most ``maximumChunk`` entries (a short memmove), which keeps upserts cheap; a
/// bulk load builds full chunks directly. Entries hold the sort key and the slot; ties are broken by the
/// listing id read from the store's id column (ties are rare, so this costs little and saves 8 bytes a row).
struct SortedSlotList {
    struct Chunk {
        var keys: [Int64]
        var slots: [UInt32]
    }

    private(set) var chunks: [Chunk] = []
    private(set) var count = 0

    static let maximumChunk = 512

    var memoryBytes: Int {
        var total = chunks.capacity * MemoryLayout<Chunk>.stride
        for chunk in chunks { total += chunk.keys.capacity * 8 + chunk.slots.capacity * 4 + 64 }
        return total
    }

    /// Builds the list from entries already sorted by `(key, id)`.
    init(sorted keys: [Int64], slots: [UInt32]) {
        var start = 0
        let fill = Self.maximumChunk * 3 / 4
        while start < keys.count {
            let end = Swift.min(start + fill, keys.count)
            var chunk = Chunk(keys: [], slots: [])
            chunk.keys.reserveCapacity(Self.maximumChunk)
            chunk.slots.reserveCapacity(Self.maximumChunk)
            chunk.keys.append(contentsOf: keys[start..<end])
            chunk.slots.append(contentsOf: slots[start..<end])
            chunks.append(chunk)
            start = end
        }
        count = keys.count
    }

    init() {}

    @inline(__always)
    private static func less(_ key: Int64, _ id: Int64, _ otherKey: Int64, _ otherID: Int64) -> Bool {
        key < otherKey || (key == otherKey && id < otherID)
    }

    /// Index of the first chunk whose last entry is not less than `(key, id)`; `chunks.count` if none.
    private func chunkIndex(key: Int64, id: Int64, ids: UnsafeBufferPointer<Int64>, strict: Bool) -> Int {
        var low = 0
        var high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            let chunk = chunks[mid]
            let lastKey = chunk.keys[chunk.keys.count - 1]
            let lastID = ids[Int(chunk.slots[chunk.slots.count - 1])]
            // strict: find the first chunk holding an entry > (key, id); else >= (key, id).
            let before = strict ? !Self.less(key, id, lastKey, lastID) : Self.less(lastKey, lastID, key, id)
            if before { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Position in `chunk` of the first entry `> (key, id)` (strict) or `>= (key, id)`.
    private static func position(in chunk: Chunk, key: Int64, id: Int64, ids: UnsafeBufferPointer<Int64>,
                                 strict: Bool) -> Int {
        var low = 0
        var high = chunk.keys.count
        while low < high {
            let mid = (low + high) / 2
            let k = chunk.keys[mid]
            let i = ids[Int(chunk.slots[mid])]
            let before = strict ? !less(key, id, k, i) : less(k, i, key, id)
            if before { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func insert(key: Int64, slot: UInt32, ids: UnsafeBufferPointer<Int64>) {
        let id = ids[Int(slot)]
        count += 1
        if chunks.isEmpty {
            var chunk = Chunk(keys: [key], slots: [slot])
            chunk.keys.reserveCapacity(Self.maximumChunk)
            chunk.slots.reserveCapacity(Self.maximumChunk)
            chunks.append(chunk)
            return
        }
        var index = chunkIndex(key: key, id: id, ids: ids, strict: false)
        if index == chunks.count { index -= 1 }
        let at = Self.position(in: chunks[index], key: key, id: id, ids: ids, strict: false)
        chunks[index].keys.insert(key, at: at)
        chunks[index].slots.insert(slot, at: at)
        if chunks[index].keys.count > Self.maximumChunk { split(index) }
    }

    private mutating func split(_ index: Int) {
        let half = chunks[index].keys.count / 2
        var upper = Chunk(keys: [], slots: [])
        upper.keys.reserveCapacity(Self.maximumChunk)
        upper.slots.reserveCapacity(Self.maximumChunk)
        upper.keys.append(contentsOf: chunks[index].keys[half...])
        upper.slots.append(contentsOf: chunks[index].slots[half...])
        chunks[index].keys.removeSubrange(half...)
        chunks[index].slots.removeSubrange(half...)
        chunks.insert(upper, at: index + 1)
    }

    /// Removes the entry for `slot` stored under `key`; the slot's id must still be in `ids`.
    mutating func remove(key: Int64, slot: UInt32, ids: UnsafeBufferPointer<Int64>) {
        let id = ids[Int(slot)]
        let index = chunkIndex(key: key, id: id, ids: ids, strict: false)
        guard index < chunks.count else { return }
        let at = Self.position(in: chunks[index], key: key, id: id, ids: ids, strict: false)
        guard at < chunks[index].slots.count, chunks[index].slots[at] == slot else { return }
        count -= 1
        if chunks[index].keys.count == 1 {
            chunks.remove(at: index)
        } else {
            chunks[index].keys.remove(at: at)
            chunks[index].slots.remove(at: at)
        }
    }

    /// Calls `body(slot, key)` for entries after `(key, id)` (or from the start), in order, until it returns false.
    /// - Returns: false when `body` stopped the walk.
    @inline(__always)
    func walk(after start: (key: Int64, id: Int64)?, ids: UnsafeBufferPointer<Int64>,
              _ body: (UInt32, Int64) -> Bool) -> Bool {
        var chunkIndex = 0
        var at = 0
        if let start {
            chunkIndex = self.chunkIndex(key: start.key, id: start.id, ids: ids, strict: true)
            if chunkIndex < chunks.count {
                at = Self.position(in: chunks[chunkIndex], key: start.key, id: start.id, ids: ids, strict: true)
            }
        }
        while chunkIndex < chunks.count {
            let chunk = chunks[chunkIndex]
            let stop = chunk.keys.withUnsafeBufferPointer { keys in
                chunk.slots.withUnsafeBufferPointer { slots in
                    var i = at
                    while i < slots.count {
                        if !body(slots[i], keys[i]) { return true }
                        i += 1
                    }
                    return false
                }
            }
            if stop { return false }
            chunkIndex += 1
            at = 0
        }
        return true
    }
}
