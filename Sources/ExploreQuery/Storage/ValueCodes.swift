/// A dense 16-bit rank per slot of one integer column against fixed bounds, ordered like the values it stands
/// for: a value equal to bound `b` has code `2b + 1`, a value between bounds `b - 1` and `b` has code `2b`.
///
/// Why: a range filter's straddling range-bitmap bucket needs a per-row check, and reading the 8-byte column
/// for those rows is a cache miss each, spread over 32 KiB per 4,096-slot block. A code is 2 bytes, so a
/// block's codes span 8 KiB and the checks read them in ascending order; the code alone decides `v < x` for
/// every row whose code differs from `code(x)`, and the column is read only for rows strictly between the
/// same two bounds as `x`. Bounds are the column's distinct values at bulk load (evenly thinned past
/// ``maximumBounds``), so at load time every row sits on a bound (unless thinned) and no row is read; values
/// written later keep exact answers through the column check. (With one code per bound interval instead, a filter like
/// `price <= 370,000` read every row priced exactly 370,000: hundreds of cache misses in a large city.)
struct ValueCodes {
    let bounds: [Int64]
    private(set) var codes: [UInt16] = []

    /// At most this many bounds (a 128 KiB search table, cached in L2 when an upsert encodes a value; codes
    /// then stay below `2^15`).
    static let maximumBounds = 16_383

    /// Codes over `bounds` (any order, duplicates allowed), keeping at most `maximumBounds` of them.
    init(bounds: [Int64], maximumBounds: Int = Self.maximumBounds) {
        var unique = bounds.sorted()
        var kept = 0
        for value in unique where kept == 0 || unique[kept - 1] != value {
            unique[kept] = value
            kept += 1
        }
        let limit = Swift.max(0, Swift.min(maximumBounds, Int(UInt16.max) / 2))
        // A fresh array either way: the sorted copy has the capacity of every value passed (a bulk load's
        // whole column), which would stay allocated behind a few thousand bounds.
        self.bounds = kept <= limit ? Array(unique[..<kept]) : (0..<limit).map { unique[$0 * kept / limit] }
    }

    var memoryBytes: Int { bounds.capacity * 8 + codes.capacity * 2 }

    /// `2b + 1` when `value` is bound `b`, else `2b` for the `b` bounds below it.
    @inline(__always)
    func code(_ value: Int64) -> UInt16 {
        bounds.withUnsafeBufferPointer { bounds in
            let b = bounds.countBelow(value, orEqual: false)
            let onBound = b < bounds.count && bounds[b] == value
            return UInt16(truncatingIfNeeded: 2 &* b &+ (onBound ? 1 : 0))
        }
    }

    /// Records `value` for `slot`, growing the code array as needed.
    @inline(__always)
    mutating func set(_ slot: Int, _ value: Int64) {
        if slot >= codes.count { grow(to: slot + 1) }
        codes[slot] = code(value)
    }

    /// Makes room for `count` codes without growing.
    mutating func reserve(_ count: Int) { codes.reserveCapacity(count) }

    mutating func grow(to count: Int) {
        guard count > codes.count else { return }
        if codes.capacity < count { codes.reserveCapacity(Swift.max(count, codes.capacity + codes.capacity / 8 + 1024)) }
        codes.append(contentsOf: repeatElement(0, count: count - codes.count))
    }

    /// How `v < x` is decided from `v`'s code: codes below `below` are less, codes above it are not, and a
    /// code equal to it needs the value unless `exactAtBound` (then `v >= x`).
    func threshold(_ x: Int64) -> (below: UInt16, exactAtBound: Bool) {
        let c = code(x)
        return (c, c & 1 == 1)
    }
}
