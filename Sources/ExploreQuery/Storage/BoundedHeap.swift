/// The `capacity` smallest sort positions offered, kept in a max-heap: once full, most offers are rejected by
/// one comparison with the top, so selecting a page among `n` matches costs about `n` comparisons instead
/// of sorting all of them.
struct BoundedHeap {
    typealias Entry = (group: UInt8, key: Int64, id: Int64, slot: Int)

    private(set) var entries: [Entry] = []
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        entries.reserveCapacity(Swift.min(capacity, 4_096))
    }

    @inline(__always)
    static func less(_ a: Entry, _ b: Entry) -> Bool {
        (a.group, a.key, a.id) < (b.group, b.key, b.id)
    }

    /// Whether the heap holds `capacity` entries (offers then replace the largest).
    var isFull: Bool { entries.count >= capacity }

    /// The largest kept entry; only when not empty.
    var top: Entry { entries[0] }

    mutating func offer(_ entry: Entry) {
        guard capacity > 0 else { return }
        if entries.count < capacity {
            entries.append(entry)
            var child = entries.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard Self.less(entries[parent], entries[child]) else { break }
                entries.swapAt(parent, child)
                child = parent
            }
        } else if Self.less(entry, entries[0]) {
            entries[0] = entry
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < entries.count else { break }
                var largest = left
                if left + 1 < entries.count && Self.less(entries[left], entries[left + 1]) { largest = left + 1 }
                guard Self.less(entries[parent], entries[largest]) else { break }
                entries.swapAt(parent, largest)
                parent = largest
            }
        }
    }

    /// The kept entries in ascending order.
    func sorted() -> [Entry] { entries.sorted(by: Self.less) }
}
