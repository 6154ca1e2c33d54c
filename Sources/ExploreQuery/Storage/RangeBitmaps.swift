/// A range-encoded bitmap index over one integer column: `less[j]` holds the slots whose value is below
/// `bounds[j]`, and `present` the slots that have a value at all.
///
/// A range predicate `value < x` is then one stored bitmap (everything below the last bound `<= x`) plus an
/// exact per-row check of the one bucket that straddles `x` (see `LessThan`), instead of a scan of the column. Bounds are
/// chosen from the data's quantiles at bulk load (so buckets hold similar numbers of rows) and stay fixed;
/// moving a row from bucket `a` to bucket `b` flips `|a - b|` bits.
struct RangeBitmaps {
    let bounds: [Int64]
    private(set) var less: [Bitset]
    private(set) var present = Bitset()
    /// Per slot, the bucket its `less` bits currently encode (`bounds.count`: none); may be stale for freed
    /// slots (see ``release(_:)``). One byte per slot: bounds are fewer than 255.
    private var encoded: [UInt8] = []

    init(bounds: [Int64]) {
        // Bucket numbers are stored in a byte per slot; keep at most 254 bounds (evenly thinned).
        let unique = Array(Set(bounds)).sorted()
        self.bounds = unique.count < 255 ? unique : (0..<254).map { unique[$0 * unique.count / 254] }
        less = Array(repeating: Bitset(), count: self.bounds.count)
    }

    var memoryBytes: Int {
        less.reduce(present.memoryBytes) { $0 + $1.memoryBytes } + bounds.capacity * 8 + encoded.capacity
    }

    /// Number of bounds `<= value`: the row is in `less[j]` exactly for `j >= bucket(value)`.
    @inline(__always)
    func bucket(_ value: Int64) -> Int {
        bounds.withUnsafeBufferPointer { $0.countBelow(value, orEqual: true) }
    }

    /// The bulk load's shortcut: encodes the buckets of slots `0..<slotCount` (`value` gives each slot's value, or
    /// `nil` for none) a word of 64 slots at a time, where inserting them one by one would flip up to
    /// `bounds.count` bits per slot. Leaves `present` to the inserts that follow, which then find their bits in
    /// place. Only for a structure that holds no slot yet; `capacity` slots are reserved.
    mutating func preload(slotCount: Int, capacity: Int, _ value: (Int) -> Int64?) {
        precondition(encoded.isEmpty, "preload needs an empty structure")
        let none = bounds.count
        encoded.reserveCapacity(capacity)
        encoded.append(contentsOf: repeatElement(UInt8(none), count: slotCount))
        let wordCount = (slotCount + 63) >> 6
        var columns = [[UInt64]](repeating: [UInt64](repeating: 0, count: wordCount), count: none)
        var masks = [UInt64](repeating: 0, count: none + 1)
        for word in 0..<wordCount {
            for slot in word << 6 ..< min(slotCount, (word + 1) << 6) {
                guard let value = value(slot) else { continue }
                let b = bucket(value)
                encoded[slot] = UInt8(b)
                masks[b] |= 1 &<< UInt64(slot & 63)
            }
            // A slot of bucket b is in less[j] for every j >= b.
            var running: UInt64 = 0
            for j in 0..<none {
                running |= masks[j]
                columns[j][word] = running
                masks[j] = 0
            }
            masks[none] = 0
        }
        less = columns.map { words in
            var blocks = [UInt64](repeating: 0, count: ((wordCount >> Bitset.blockShift) >> 6) + 1)
            for (index, word) in words.enumerated() where word != 0 {
                let block = index >> Bitset.blockShift
                blocks[block >> 6] |= 1 &<< UInt64(block & 63)
            }
            return Bitset(words: words, blocks: blocks)
        }
    }

    /// Makes room for `count` slots in the per-slot bucket numbers.
    mutating func reserve(slots count: Int) { encoded.reserveCapacity(count) }

    mutating func insert(_ slot: Int, _ value: Int64) {
        present.insert(slot)
        move(slot, to: bucket(value))
    }

    /// Drops the value of a live slot: its bits are really cleared, because live rows without a value must
    /// not show up in `less` (the price-bucket facet reads `less` under a mask of live rows only).
    mutating func remove(_ slot: Int) {
        present.remove(slot)
        move(slot, to: bounds.count)
    }

    /// Drops the value of a slot that is being freed. Only `present` is cleared: the `less` bits stay as
    /// they are (recorded in `encoded`) because every reader masks them with live or `present` rows, and
    /// the slot's next row moves from the stale bucket, flipping `|a - b|` bits instead of clearing up to
    /// `bounds.count` bits now and setting as many again later. Deletes thus cost one bit flip here.
    mutating func release(_ slot: Int) {
        present.remove(slot)
    }

    mutating func update(_ slot: Int, to new: Int64) {
        move(slot, to: bucket(new))
    }

    /// Makes `slot`'s `less` bits encode bucket `b` (`bounds.count`: no bits), flipping only the difference.
    @inline(__always)
    private mutating func move(_ slot: Int, to b: Int) {
        if slot >= encoded.count {
            encoded.append(contentsOf: repeatElement(UInt8(bounds.count), count: slot + 1 - encoded.count))
        }
        let a = Int(encoded[slot])
        if a < b {
            for j in a..<b { less[j].remove(slot) }
        } else if b < a {
            for j in b..<a { less[j].insert(slot) }
        }
        encoded[slot] = UInt8(b)
    }

    /// The stored bitmap of slots below `x` when `x` is one of the bounds.
    func storedLess(than x: Int64) -> [UInt64]? {
        let b = bucket(x)
        return b >= 1 && bounds[b - 1] == x ? less[b - 1].words : nil
    }
}
