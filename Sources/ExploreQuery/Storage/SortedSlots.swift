/// A small sorted array of slots: the posting list for high-cardinality columns (area, location id), where a
/// bitset per value would cost `rows / 8` bytes for each of thousands of values.
struct SortedSlots {
    private(set) var slots: [UInt32] = []

    mutating func insert(_ slot: UInt32) {
        var low = 0
        var high = slots.count
        while low < high {
            let mid = (low + high) / 2
            if slots[mid] < slot { low = mid + 1 } else { high = mid }
        }
        slots.insert(slot, at: low)
    }

    mutating func remove(_ slot: UInt32) {
        var low = 0
        var high = slots.count
        while low < high {
            let mid = (low + high) / 2
            if slots[mid] < slot { low = mid + 1 } else { high = mid }
        }
        if low < slots.count && slots[low] == slot { slots.remove(at: low) }
    }

    var memoryBytes: Int { slots.capacity * 4 + 32 }
}
