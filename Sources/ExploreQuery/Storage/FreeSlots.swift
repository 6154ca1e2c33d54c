/// Row slots not holding a row: those freed by deleted rows, by the city and area they held, and the unused rest
/// of each city's newest run of slots. Which one a new row gets decides how well slots stay clustered.
///
/// A bulk load lays slots out by city and, within a city, by area; the postings keep per-block summaries (which
/// cities and areas a block holds) that let a search skip every block its filter cannot match, and let the area
/// facet count a block with one pass per area held there. Reusing any free slot scattered new rows over all
/// blocks (after 200,000 changes at a million rows, every city had rows in nearly every block, and searches took
/// five times as long). Reusing a slot freed by another area of the same city erodes the layout more slowly:
/// after 400,000 changes at a million rows, each block of a large city held pages of 80 areas instead of 5, an
/// area's searches read all of its city's blocks instead of one, and typical searches took 1.8 times as long. So
/// a new row takes, in order:
/// 1. a slot freed by a row of its own city and area;
/// 2. the next slot of its city's newest run (those blocks mix areas, but only of rows added since the load);
/// 3. a slot freed by another area of its city, once the city holds ``heldLimit`` freed slots or more: an area
///    that shrinks for good would otherwise hold its slots back forever.
///
/// Otherwise the caller starts a new run for the city (``addRun(_:city:)``).
struct FreeSlots {
    /// Per city code: freed slots by area code. An area's entry is removed once empty, so `first` of a city's
    /// dictionary is always a slot to give.
    private var freed: [[UInt32: [UInt32]]] = []
    /// Per city code: slots in `freed`.
    private var freedCount: [Int] = []
    /// Per city code: the unused slots of its newest run, in descending order (taken from the end).
    private var runTails: [[UInt32]] = []

    /// Freed slots a city holds before its new rows take slots other areas freed.
    let heldLimit: Int

    /// - Parameter heldLimit: freed slots a city may hold before its new rows take slots other areas freed; by
    ///   default a quarter of a block, about 100 KB of columns per city.
    init(heldLimit: Int = 1_024) {
        self.heldLimit = heldLimit
    }

    /// A slot for a new row of `city` and `area`, and whether its own area freed it (the row is then where a
    /// bulk load would have put it); nil when the city needs a new run.
    mutating func take(city: UInt32, area: UInt32) -> (slot: UInt32, inPlace: Bool)? {
        let c = Int(city)
        guard c < freed.count else { return nil }
        if let slot = takeFreed(city: c, area: area) { return (slot, true) }
        if let slot = runTails[c].popLast() { return (slot, false) }
        if freedCount[c] >= heldLimit, let other = freed[c].first?.key, let slot = takeFreed(city: c, area: other) {
            return (slot, false)
        }
        return nil
    }

    /// A slot `area` of city `c` freed, if any; its list goes once empty.
    private mutating func takeFreed(city c: Int, area: UInt32) -> UInt32? {
        guard let slot = freed[c][area]?.popLast() else { return nil }
        if freed[c][area]?.isEmpty == true { freed[c][area] = nil }
        freedCount[c] -= 1
        return slot
    }

    /// Records that the row of `city` and `area` in `slot` is gone.
    mutating func free(_ slot: UInt32, city: UInt32, area: UInt32) {
        grow(to: city)
        freed[Int(city)][area, default: []].append(slot)
        freedCount[Int(city)] += 1
    }

    /// Gives `slots`, a new run of `city`, to the city's next rows, lowest first.
    mutating func addRun(_ slots: Range<Int>, city: UInt32) {
        grow(to: city)
        runTails[Int(city)] = slots.reversed().map(UInt32.init)
    }

    /// Bytes held.
    var memoryBytes: Int {
        var total = (freed.capacity + runTails.capacity) * 8 + freedCount.capacity * 8
        for areas in freed {
            total += areas.capacity * (4 + 8) + areas.capacity / 8
            for slots in areas.values { total += slots.capacity * 4 + 32 }
        }
        for tail in runTails { total += tail.capacity * 4 }
        return total
    }

    private mutating func grow(to city: UInt32) {
        while freed.count <= Int(city) {
            freed.append([:])
            freedCount.append(0)
            runTails.append([])
        }
    }
}
