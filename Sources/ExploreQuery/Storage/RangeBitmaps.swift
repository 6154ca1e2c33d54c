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

    init(bounds: [Int64]) {
        self.bounds = Array(Set(bounds)).sorted()
        less = Array(repeating: Bitset(), count: self.bounds.count)
    }

    var memoryBytes: Int { less.reduce(present.memoryBytes) { $0 + $1.memoryBytes } + bounds.capacity * 8 }

    /// Number of bounds `<= value`: the row is in `less[j]` exactly for `j >= bucket(value)`.
    @inline(__always)
    func bucket(_ value: Int64) -> Int {
        var low = 0
        var high = bounds.count
        while low < high {
            let mid = (low + high) / 2
            if bounds[mid] <= value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func insert(_ slot: Int, _ value: Int64) {
        present.insert(slot)
        for j in bucket(value)..<bounds.count { less[j].insert(slot) }
    }

    mutating func remove(_ slot: Int, _ value: Int64) {
        present.remove(slot)
        for j in bucket(value)..<bounds.count { less[j].remove(slot) }
    }

    mutating func update(_ slot: Int, from old: Int64, to new: Int64) {
        let a = bucket(old)
        let b = bucket(new)
        if a < b {
            for j in a..<b { less[j].remove(slot) }
        } else if b < a {
            for j in b..<a { less[j].insert(slot) }
        }
    }

    /// The stored bitmap of slots below `x` when `x` is one of the bounds.
    func storedLess(than x: Int64) -> [UInt64]? {
        let b = bucket(x)
        return b >= 1 && bounds[b - 1] == x ? less[b - 1].words : nil
    }
}
