extension UnsafeBufferPointer where Element == Int64 {
    /// In a buffer sorted ascending, the number of leading elements below `key`, or not above it when `orEqual`:
    /// where `key` goes before (after) its equals. The one binary search behind range buckets, value codes and
    /// ranked keys.
    ///
    /// Branch-free: each step halves the range with a conditional move, so the loop runs `log2(count)` steps
    /// whatever the data and never mispredicts. The explore mix searches hundreds of price groups' chunk ends
    /// and chunks per city facet, where the compares are coin flips: alternating runs measured a p90 of 92-100
    /// µs against 93-106 µs with the branchy loop.
    @inline(__always)
    func countBelow(_ key: Int64, orEqual: Bool) -> Int {
        guard let start = baseAddress, count > 0 else { return 0 }
        var base = start
        var length = count
        while length > 1 {
            let half = length >> 1
            let below = orEqual ? base[half - 1] <= key : base[half - 1] < key
            base = below ? base + half : base
            length -= half
        }
        let last = orEqual ? base[0] <= key : base[0] < key
        return base - start + (last ? 1 : 0)
    }

    /// The same count as ``countBelow(_:orEqual:)``, by comparing every element. Why: updates search a short
    /// chunk that is usually not cached; a binary search waits for each probe's cache miss in turn, while here
    /// no load depends on an earlier compare, so the chunk's lines load in parallel, and the compares vectorise.
    @inline(__always)
    func countBelowScanning(_ key: Int64, orEqual: Bool) -> Int {
        var below = 0
        if orEqual {
            for value in self { below &+= value <= key ? 1 : 0 }
        } else {
            for value in self { below &+= value < key ? 1 : 0 }
        }
        return below
    }
}
