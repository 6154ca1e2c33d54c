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
}
