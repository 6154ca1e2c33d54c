extension UnsafeBufferPointer where Element == Int64 {
    /// In a buffer sorted ascending, the number of leading elements below `key`, or not above it when `orEqual`:
    /// where `key` goes before (after) its equals. The one binary search behind range buckets, value codes and
    /// ranked keys.
    @inline(__always)
    func countBelow(_ key: Int64, orEqual: Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) >> 1
            if orEqual ? self[mid] <= key : self[mid] < key { low = mid + 1 } else { high = mid }
        }
        return low
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
