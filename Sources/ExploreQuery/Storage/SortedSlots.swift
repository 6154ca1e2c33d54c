/// A small sorted array of slots: the posting list for high-cardinality columns (area, location id), where a
/// bitset per value would cost `rows / 8` bytes for each of thousands of values.
struct SortedSlots {
    private(set) var slots: [UInt32] = []
    /// One bit per 4,096-slot block that may hold slots (set on insert, never cleared), like
    /// ``Bitset/blocks``: a filter on these postings learns which blocks to evaluate without reading the slots.
    private(set) var blocks: [UInt64] = []

    mutating func insert(_ slot: UInt32) {
        var low = 0
        var high = slots.count
        while low < high {
            let mid = (low + high) / 2
            if slots[mid] < slot { low = mid + 1 } else { high = mid }
        }
        slots.insert(slot, at: low)
        let block = Int(slot) >> (6 + Bitset.blockShift)
        if block >> 6 >= blocks.count { blocks.append(contentsOf: repeatElement(0, count: (block >> 6) + 1 - blocks.count)) }
        blocks[block >> 6] |= 1 &<< UInt64(block & 63)
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

    var memoryBytes: Int { slots.capacity * 4 + blocks.capacity * 8 + 64 }
}
