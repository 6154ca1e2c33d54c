import Dispatch

/// The columnar store and its indexes; not thread-safe on its own, owned by an ``ExploreIndex`` once served.
///
/// Layout: every listing lives in a row slot; its fixed-size fields are one ``SlotRecord`` (row-major, so
/// reading or updating a row is one or two cache lines instead of a miss per column), freed slots are reused
/// through a free list, and `slotByID` maps listing ids to slots. Low-cardinality text is dictionary encoded,
/// titles and image URLs live in byte arenas. Indexes over slots: bitset postings for listing type, status,
/// city, bedrooms and bathrooms; block postings for area; sorted slot lists for location id; range-encoded bitmaps for the
/// price ends and creation time; and sorted slot lists for every sort order.
public final class ExploreStore {
    // MARK: Columns

    /// The fixed-size fields of every slot.
    var records: [SlotRecord] = []
    /// Each slot's area code again, densely (4 bytes a slot): an area facet over a block holding many areas
    /// (rows added after the bulk load, in slots at the end) counts its matching rows from here, 16 slots a
    /// cache line, instead of from their 64-byte records.
    var areaOfSlot: [UInt32] = []
    var titles = StringArena()
    var imageURLs = StringArena()

    var statusDictionary = StringDictionary()
    var cityDictionary = StringDictionary()
    var areaDictionary = StringDictionary()

    var slotByID = SlotMap()
    /// Slots without a row, handed out so that rows added later keep the load's clustering (see ``FreeSlots``).
    var freeSlots = FreeSlots()
    /// Rows given a slot their own area did not free since the bulk load: in a city's newer runs, among other
    /// areas' rows. Searches read more blocks the more there are (see ``ExploreIndex`` for what is done then).
    private(set) var rowsOutOfPlace = 0

    // MARK: Indexes

    var live = Bitset()
    var typePostings = [Bitset](repeating: Bitset(), count: ListingType.allCases.count)
    var statusPostings: [Bitset] = []
    var cityPostings: [Bitset] = []
    var areaPostings = BlockPostings()
    var locationPostings: [Int64: SortedSlots] = [:]
    var bedroomPostings: [Int32: Bitset] = [:]
    var bathroomPostings: [Int32: Bitset] = [:]
    var priceLowRanges: RangeBitmaps
    var priceHighRanges: RangeBitmaps
    var createdRanges: RangeBitmaps
    /// 16-bit codes of `priceLow` and `priceHigh`, so price filters check straddling rows without reading
    /// the 8-byte columns (see ``ValueCodes``).
    var priceLowCodes = ValueCodes(bounds: [])
    var priceHighCodes = ValueCodes(bounds: [])
    /// 16-bit codes of `createdAt`, so collecting a page sorted by creation time rejects most matches
    /// without reading their records.
    var createdCodes = ValueCodes(bounds: [])
    /// The widest `priceHigh - priceLow` ever stored (never lowered): rows with `priceLow` below
    /// `priceMin - maxPriceSpread` cannot overlap a price filter, so price-sorted walks start past them.
    var maxPriceSpread: Int64 = 0

    /// Priced rows by `(priceLow, id)` and unpriced rows by id; descending price walks the first backwards.
    var priceOrder = SortedSlotList()
    var unpriced = SortedSlotList()
    /// Rows by `(createdAt, id)`; newest-first walks it backwards.
    var createdOrder = SortedSlotList()
    /// Live rows grouped by type, status, city and bedrooms, for counts over the whole data set.
    var cube = GroupCube()

    /// Number of slots ever used (live or free).
    var slotCount: Int { records.count }
    /// Words in a bitset covering every slot.
    var wordCount: Int { (slotCount + 63) >> 6 }

    /// Number of live listings.
    public var count: Int { slotByID.count }

    /// An empty store.
    public init() {
        priceLowRanges = RangeBitmaps(bounds: Self.defaultPriceBounds)
        priceHighRanges = RangeBitmaps(bounds: Self.defaultPriceBounds)
        createdRanges = RangeBitmaps(bounds: [])
    }

    /// Bulk-loads rows (the rebuild path); later rows with the same id replace earlier ones.
    public init<Rows: Sequence>(bulk rows: Rows) where Rows.Element == ExploreListing {
        // `Array(rows)` shares an array's storage, and rows are only ever read in place through a buffer
        // pointer: copying an `ExploreListing` retains each of its strings, which was a sixth of a million-row
        // load.
        let input = Array(rows)
        var plan = input.withUnsafeBufferPointer { BulkPlan($0) }
        priceLowRanges = RangeBitmaps(bounds: Self.defaultPriceBounds.filter { PriceBuckets.lowerBounds.contains($0) }
                                      + Self.quantiles(&plan.lows, count: 64))
        priceHighRanges = RangeBitmaps(bounds: Self.defaultPriceBounds.filter { PriceBuckets.lowerBounds.contains($0) }
                                       + Self.quantiles(&plan.highs, count: 64))
        // Slot `i` holds placement `i`. Every column is filled in a local variable and stored once: each access
        // to a stored property of this class is checked for exclusivity at run time, which per row and column
        // was a tenth of the load.
        var lowCodes = ValueCodes(bounds: plan.lows)
        var highCodes = ValueCodes(bounds: plan.highs)
        var createdAtCodes = ValueCodes(bounds: plan.created)
        createdRanges = RangeBitmaps(bounds: Self.quantiles(&plan.created, count: 32))
        let placements = plan.placements
        var (titleArena, imageArena) = (StringArena(), StringArena())
        // Slot-indexed columns get room for later rows now (see `capacityAfterLoad`).
        let capacity = Self.capacityAfterLoad(placements.count)
        titleArena.reserve(slots: capacity, bytes: Self.capacityAfterLoad(plan.titleBytes))
        imageArena.reserve(slots: capacity, bytes: Self.capacityAfterLoad(plan.imageBytes))
        plan = BulkPlan()  // the value columns are not needed any more
        titleArena.ensureSlots(placements.count)
        imageArena.ensureSlots(placements.count)
        lowCodes.reserve(capacity)
        highCodes.reserve(capacity)
        createdAtCodes.reserve(capacity)
        lowCodes.grow(to: placements.count)
        highCodes.grow(to: placements.count)
        createdAtCodes.grow(to: placements.count)
        var loaded = [SlotRecord]()
        loaded.reserveCapacity(capacity)
        input.withUnsafeBufferPointer { rows in
            for placement in placements {
                let new = record(for: rows[placement.position], replacing: SlotRecord())
                let slot = loaded.count
                loaded.append(new)
                lowCodes.set(slot, new.priceLow)
                highCodes.set(slot, new.priceHigh)
                createdAtCodes.set(slot, new.createdAt)
                titleArena.set(slot, rows[placement.position].title)
                imageArena.set(slot, rows[placement.position].primaryImageURL)
            }
        }
        records = loaded
        areaOfSlot.reserveCapacity(capacity)
        areaOfSlot.append(contentsOf: loaded.lazy.map(\.area))
        var ids = SlotMap(slotsOf: loaded.map(\.id))
        ids.reserveArray(Self.capacityAfterLoad(ids.arrayCount))
        slotByID = ids
        (priceLowCodes, priceHighCodes, createdCodes) = (lowCodes, highCodes, createdAtCodes)
        (titles, imageURLs) = (titleArena, imageArena)
        // Rows are indexed as transitions from "no row" by the change batches' posting and range phases; the
        // orders and the cube are built from scratch instead of row by row. As in a change batch, each part
        // owns its structures and only reads the records, so the parts run on all cores (longest first).
        // `nonisolated(unsafe)` is sound for that reason, and because nothing else can see the store yet.
        nonisolated(unsafe) let store = self
        let records = self.records
        func forEachChunk(_ body: ([RowTransition]) -> Void) {
            for start in stride(from: 0, to: records.count, by: 4_096) {
                body((start..<Swift.min(start + 4_096, records.count)).map {
                    RowTransition(slot: $0, old: SlotRecord(), new: records[$0])
                })
            }
        }
        nonisolated(unsafe) let parts: [() -> Void] = [
            { store.buildOrders() },
            {
                store.cube = GroupCube(
                    slotCount: records.count,
                    key: { SlotFlags(rawValue: records[$0].flags).contains(.live) ? Self.cubeKey(records[$0]) : nil },
                    price: { Self.cubePrice(records[$0]) })
            },
            { forEachChunk { store.updatePostings($0) } },
            {
                store.priceLowRanges.preload(slotCount: records.count, capacity: capacity) {
                    SlotFlags(rawValue: records[$0].flags).hasPrice ? records[$0].priceLow : nil
                }
                store.priceHighRanges.preload(slotCount: records.count, capacity: capacity) {
                    SlotFlags(rawValue: records[$0].flags).hasPrice ? records[$0].priceHigh : nil
                }
                store.createdRanges.preload(slotCount: records.count, capacity: capacity) { records[$0].createdAt }
                forEachChunk {
                    Self.updateRanges($0, low: &store.priceLowRanges, high: &store.priceHighRanges,
                                      created: &store.createdRanges, spread: &store.maxPriceSpread)
                }
            },
        ]
        DispatchQueue.concurrentPerform(iterations: parts.count) { parts[$0]() }
    }

    /// What a bulk load works out from its rows before it writes a slot: which row each id keeps, the slot order,
    /// the value columns its bounds come from, and the text sizes to reserve.
    private struct BulkPlan {
        /// Rows to load, by position, in slot order.
        var placements: [Placement] = []
        var lows: [Int64] = []
        var highs: [Int64] = []
        var created: [Int64] = []
        var titleBytes = 0
        var imageBytes = 0

        init() {}

        init(_ rows: UnsafeBufferPointer<ExploreListing>) {
            let positions = Self.lastPositionPerID(rows)
            // Cluster slots by city and area so their postings are dense where they are used. The sort orders
            // small integer keys (each name's rank among the distinct names, so the order is the strings' order)
            // and row positions, not the rows: no string comparisons, no large values moved.
            func ranks(_ name: (Int) -> String) -> [String: Int32] {
                var names = Set<String>()
                for position in positions { names.insert(name(position)) }
                var rank: [String: Int32] = [:]
                rank.reserveCapacity(names.count)
                for (index, name) in names.sorted().enumerated() { rank[name] = Int32(index) }
                return rank
            }
            let cityRank = ranks { rows[$0].city }
            let areaRank = ranks { rows[$0].area }
            placements = positions.map { position in
                Placement(city: cityRank[rows[position].city] ?? 0, area: areaRank[rows[position].area] ?? 0,
                          id: rows[position].id, position: position)
            }
            placements.sort()
            lows.reserveCapacity(placements.count)
            highs.reserveCapacity(placements.count)
            created.reserveCapacity(placements.count)
            for placement in placements {
                let position = placement.position
                if let low = rows[position].priceFrom ?? rows[position].priceTo { lows.append(low) }
                if let high = rows[position].priceTo ?? rows[position].priceFrom { highs.append(high) }
                created.append(rows[position].createdAt)
                titleBytes += rows[position].title.utf8.count
                imageBytes += rows[position].primaryImageURL?.utf8.count ?? 0
            }
        }

        /// The position of each id's last row in `rows`, in the order the ids first appear.
        private static func lastPositionPerID(_ rows: UnsafeBufferPointer<ExploreListing>) -> [Int] {
            var positionByID: [Int64: Int] = [:]
            positionByID.reserveCapacity(rows.count)
            var positions: [Int] = []
            positions.reserveCapacity(rows.count)
            for position in rows.indices {
                let id = rows[position].id
                if let earlier = positionByID.updateValue(positions.count, forKey: id) {
                    // A later row replaces the earlier one in place, keeping the id's first-seen order.
                    positionByID[id] = earlier
                    positions[earlier] = position
                } else {
                    positions.append(position)
                }
            }
            return positions
        }
    }

    /// A row's place in a bulk load: its city's and area's rank among the distinct names, its id, its position.
    private struct Placement: Comparable {
        var city: Int32
        var area: Int32
        var id: Int64
        var position: Int
        static func < (a: Placement, b: Placement) -> Bool {
            (a.city, a.area, a.id) < (b.city, b.area, b.id)
        }
    }

    static let defaultPriceBounds: [Int64] = PriceBuckets.lowerBounds + [
        50_000, 150_000, 250_000, 350_000, 450_000, 600_000, 875_000, 1_500_000, 3_000_000, 10_000_000,
    ]

    /// `count - 1` evenly spaced quantiles of `values` (sorted in place).
    private static func quantiles(_ values: inout [Int64], count: Int) -> [Int64] {
        guard values.count > count else { return [] }
        values.sort()
        return (1..<count).map { values[$0 * values.count / count] }
    }

    // MARK: Reading rows

    func row(id: ListingID) -> ExploreListing? {
        guard let slot = slotByID[id] else { return nil }
        return row(slot: Int(slot))
    }

    func row(slot: Int) -> ExploreListing {
        listing(records[slot], title: titles.get(slot), imageURL: imageURLs.get(slot))
    }

    private func listing(_ record: SlotRecord, title: String?, imageURL: String?) -> ExploreListing {
        let flag = SlotFlags(rawValue: record.flags)
        return ExploreListing(
            id: record.id, listingType: ListingType(rawValue: record.type) ?? .existing,
            status: statusDictionary.values[Int(record.status)], title: title ?? "",
            locationID: record.locationID,
            priceFrom: flag.contains(.hasPriceFrom) ? record.priceLow : nil,
            priceTo: flag.contains(.hasPriceTo) ? record.priceHigh : nil,
            bedrooms: flag.contains(.hasBedrooms) ? record.bedrooms : nil,
            bathrooms: flag.contains(.hasBathrooms) ? record.bathrooms : nil,
            primaryImageURL: imageURL,
            city: cityDictionary.values[Int(record.city)], area: areaDictionary.values[Int(record.area)],
            createdAt: record.createdAt)
    }

    /// The live rows among slots `range`, in slot order.
    func liveRows(inSlots range: Range<Int>) -> [ExploreListing] {
        rows(slots: range.clamped(to: 0..<slotCount).filter { live.contains($0) })
    }

    /// The rows of `slots`, in order: every row's record, string spans and string ends are read first
    /// (independent loads, so their cache misses overlap instead of queueing row by row), then the strings
    /// are built.
    func rows(slots: [Int]) -> [ExploreListing] {
        let records = self.records
        let fetched = slots.map { records[$0] }
        let titleSpans = slots.map { titles.span($0) }
        let imageSpans = slots.map { imageURLs.span($0) }
        let touched = titles.touch(titleSpans) &+ imageURLs.touch(imageSpans)
        let titleValues = titleSpans.map { titles.string($0) }
        let imageValues = imageSpans.map { imageURLs.string($0) }
        // Never true (no slots, no bytes touched); it keeps the reads above, which only warm the cache, from
        // being optimised away or moved after the strings are built.
        if touched == 0xA5 && slots.isEmpty { preconditionFailure("no bytes are touched without slots") }
        return slots.indices.map { i in listing(fetched[i], title: titleValues[i], imageURL: imageValues[i]) }
    }

    /// Bytes held by columns, strings and indexes, from the buffers' capacities.
    var memoryBytes: Int {
        var total = records.capacity * MemoryLayout<SlotRecord>.stride + titles.memoryBytes + imageURLs.memoryBytes
        total += areaOfSlot.capacity * 4
        total += statusDictionary.memoryBytes + cityDictionary.memoryBytes + areaDictionary.memoryBytes
        total += slotByID.memoryBytes
        total += freeSlots.memoryBytes
        total += live.memoryBytes
        for posting in typePostings { total += posting.memoryBytes }
        for posting in statusPostings { total += posting.memoryBytes }
        for posting in cityPostings { total += posting.memoryBytes }
        total += areaPostings.memoryBytes
        total += locationPostings.capacity * (8 + MemoryLayout<SortedSlots>.stride)
        for posting in locationPostings.values { total += posting.memoryBytes }
        for posting in bedroomPostings.values { total += posting.memoryBytes + 16 }
        for posting in bathroomPostings.values { total += posting.memoryBytes + 16 }
        total += priceLowRanges.memoryBytes + priceHighRanges.memoryBytes + createdRanges.memoryBytes
        total += priceLowCodes.memoryBytes + priceHighCodes.memoryBytes + createdCodes.memoryBytes
        total += priceOrder.memoryBytes + unpriced.memoryBytes + createdOrder.memoryBytes
        total += cube.memoryBytes
        return total
    }

    // MARK: Writing rows (see ExploreStore+Changes.swift for change batches)

    /// Storage renewed off to the side: string arenas rewritten, slot-indexed columns copied into larger buffers.
    /// Each field is nil when that part needs nothing.
    struct Renewal {
        var titles: StringArena?
        var imageURLs: StringArena?
        var records: [SlotRecord]?
        var areaOfSlot: [UInt32]?
        var codes: (low: ValueCodes, high: ValueCodes, created: ValueCodes)?
        var ranges: (low: RangeBitmaps, high: RangeBitmaps, created: RangeBitmaps)?
        var slotByID: SlotMap?
    }

    /// What this store's storage needs before the next batch: arenas due for a rewrite (see
    /// `StringArena.wantsRewrite`), and room for another eighth of slots once fewer than two slot runs are left
    /// (a batch starting new runs would otherwise grow every slot-indexed column), and likewise for the ids'
    /// array. Reads the store only.
    func renewal() -> Renewal {
        // A copy shares its buffers until reserved: only the reserved ones are copied, into larger buffers.
        func reserved<T>(_ value: T, _ reserve: (inout T) -> Void) -> T {
            var copy = value
            reserve(&copy)
            return copy
        }
        var renewal = Renewal()
        if slotByID.spareArrayCapacity < 2 * Self.appendRun {
            renewal.slotByID = reserved(slotByID) {
                $0.reserveArray(Swift.max(Self.capacityAfterLoad($0.arrayCount), $0.arrayCount + 4 * Self.appendRun))
            }
        }
        // At least four runs of room, so a small store is not renewed again at the next batch.
        let room = records.capacity - records.count < 2 * Self.appendRun
            ? Swift.max(Self.capacityAfterLoad(records.count), records.count + 4 * Self.appendRun) : nil
        func renewed(_ arena: StringArena) -> StringArena? {
            var result = arena.wantsRewrite ? arena.rewritten() : nil
            if let room {
                result = result ?? arena
                result?.reserve(slots: room)
            }
            return result
        }
        renewal.titles = renewed(titles)
        renewal.imageURLs = renewed(imageURLs)
        guard let room else { return renewal }
        renewal.records = reserved(records) { $0.reserveCapacity(room) }
        renewal.areaOfSlot = reserved(areaOfSlot) { $0.reserveCapacity(room) }
        renewal.codes = (reserved(priceLowCodes) { $0.reserve(room) }, reserved(priceHighCodes) { $0.reserve(room) },
                         reserved(createdCodes) { $0.reserve(room) })
        renewal.ranges = (reserved(priceLowRanges) { $0.reserve(slots: room) },
                          reserved(priceHighRanges) { $0.reserve(slots: room) },
                          reserved(createdRanges) { $0.reserve(slots: room) })
        return renewal
    }

    /// Moves in a ``renewal()`` of this store, unchanged since, and empties `renewal`. Why empty it: the renewed
    /// parts share their unchanged buffers with the parts they replace, and any copy left with the caller would
    /// make the batch's first write to each such buffer copy it again (copy-on-write: 20-50 ms at a million rows).
    func install(_ renewal: inout Renewal) {
        let parts = renewal
        renewal = Renewal()
        if let renewed = parts.titles { titles = renewed }
        if let renewed = parts.imageURLs { imageURLs = renewed }
        if let renewed = parts.records { records = renewed }
        if let renewed = parts.areaOfSlot { areaOfSlot = renewed }
        if let renewed = parts.codes { (priceLowCodes, priceHighCodes, createdCodes) = renewed }
        if let renewed = parts.ranges { (priceLowRanges, priceHighRanges, createdRanges) = renewed }
        if let renewed = parts.slotByID { slotByID = renewed }
    }

    /// A slot for `id`, a row of `city` and `area` (dictionary codes): a free one if ``FreeSlots`` has one that
    /// keeps slots clustered, else the first of a new run of ``appendRun`` slots for the city, the rest of the
    /// run kept for the city's next rows. Rows added after the bulk load thus stay clustered by city too: a
    /// search then reads the blocks of its own city's runs, not of every city's new rows.
    func allocateSlot(for id: ListingID, city: UInt32, area: UInt32) -> Int {
        let slot: Int
        if let (free, inPlace) = freeSlots.take(city: city, area: area) {
            slot = Int(free)
            if !inPlace { rowsOutOfPlace += 1 }
        } else {
            rowsOutOfPlace += 1
            slot = records.count
            let end = slot + Self.appendRun
            if end > records.capacity { records.reserveCapacity(end + records.count / 8 + 1024) }
            records.append(contentsOf: repeatElement(SlotRecord(), count: end - slot))
            areaOfSlot.append(contentsOf: repeatElement(0, count: end - slot))
            titles.ensureSlots(end)
            imageURLs.ensureSlots(end)
            priceLowCodes.grow(to: end)
            priceHighCodes.grow(to: end)
            createdCodes.grow(to: end)
            freeSlots.addRun(slot + 1..<end, city: city)
        }
        records[slot].id = id
        slotByID[id] = UInt32(slot)
        return slot
    }

    /// The capacity a bulk load gives a slot-indexed column of `count` entries (or an arena of `count` bytes): an
    /// eighth more, so the change batches that follow a load or rebuild add rows without reallocating them.
    ///
    /// Why: a load leaves no spare capacity, and the first batch that needed a new slot copied every column and
    /// both string arenas (about 90 ms at a million rows, while holding the index's write lock, so every search
    /// waited). Capacity that is never written costs address space, not resident memory.
    static func capacityAfterLoad(_ count: Int) -> Int { count + count / 8 + appendRun }

    /// Slots a city gets at a time once its freed slots are used up: a quarter of a block, so a city's later rows
    /// share a block with at most three other cities' (at most 1,023 slots held back per city, about 100 KB each).
    static let appendRun = 1_024

    /// The cube group of a record's values.
    static func cubeKey(_ record: SlotRecord) -> GroupCube.Key {
        let hasBedrooms = SlotFlags(rawValue: record.flags).contains(.hasBedrooms)
        return GroupCube.Key(type: record.type, status: record.status, city: record.city,
                             bedrooms: hasBedrooms ? record.bedrooms : Int32.min, hasBedrooms: hasBedrooms)
    }

    /// A record's effective price range, if it has a price.
    static func cubePrice(_ record: SlotRecord) -> (low: Int64, high: Int64)? {
        SlotFlags(rawValue: record.flags).hasPrice ? (record.priceLow, record.priceHigh) : nil
    }

    static func insert(_ slot: Int, code: UInt32, into postings: inout [Bitset]) {
        while postings.count <= Int(code) { postings.append(Bitset()) }
        postings[Int(code)].insert(slot)
    }

    /// Builds every sort order from scratch (bulk load).
    private func buildOrders() {
        // Sorts plain (key, id, slot) values: the comparator touches no class storage, so a million-row bulk load
        // pays no exclusivity check or closure call per comparison (this was the bulk load's largest cost).
        typealias Entry = SortedSlotList.Entry
        let records = self.records
        var priced: [Entry] = []
        var unpricedSlots: [Entry] = []
        var all: [Entry] = []
        priced.reserveCapacity(records.count)
        all.reserveCapacity(records.count)
        for slot in 0..<records.count {
            let record = records[slot]
            let flag = SlotFlags(rawValue: record.flags)
            guard flag.contains(.live) else { continue }
            let (id, s) = (record.id, UInt32(slot))
            if flag.hasPrice {
                priced.append(Entry(key: record.priceLow, id: id, slot: s))
            } else {
                unpricedSlots.append(Entry(key: 0, id: id, slot: s))
            }
            all.append(Entry(key: record.createdAt, id: id, slot: s))
        }
        func build(_ entries: inout [Entry]) -> SortedSlotList {
            entries.sort()
            return SortedSlotList(sorted: entries.map(\.key), ids: entries.map(\.id), slots: entries.map(\.slot))
        }
        priceOrder = build(&priced)
        unpriced = build(&unpricedSlots)
        createdOrder = build(&all)
    }
}

/// One slot's fixed-size fields, kept together (64 bytes with padding) so reading a page's rows, testing a
/// row against a filter or updating a row touches one record instead of a cache line per column.
struct SlotRecord: Equatable {
    var id: Int64 = 0
    var locationID: Int64 = 0
    /// Effective price range: `priceLow = priceFrom ?? priceTo`, `priceHigh = priceTo ?? priceFrom` (0 when
    /// unpriced); the flags record which ends the row really had, so the original optionals can be rebuilt.
    var priceLow: Int64 = 0
    var priceHigh: Int64 = 0
    var createdAt: Int64 = 0
    /// Dictionary codes of status, city and area.
    var status: UInt32 = 0
    var city: UInt32 = 0
    var area: UInt32 = 0
    /// 0 when absent (see the flags).
    var bedrooms: Int32 = 0
    var bathrooms: Int32 = 0
    /// ``ListingType`` raw value.
    var type: UInt8 = 0
    /// ``SlotFlags``.
    var flags: UInt8 = 0
}

/// Per-slot presence bits.
struct SlotFlags: OptionSet {
    let rawValue: UInt8
    static let live = SlotFlags(rawValue: 1 << 0)
    static let hasPriceFrom = SlotFlags(rawValue: 1 << 1)
    static let hasPriceTo = SlotFlags(rawValue: 1 << 2)
    static let hasBedrooms = SlotFlags(rawValue: 1 << 3)
    static let hasBathrooms = SlotFlags(rawValue: 1 << 4)

    /// Whether either price end is present. A plain mask test: `isDisjoint(with: [...])` builds the set from
    /// an array literal, which showed up in profiles of upserts and per-row facet counting.
    @inline(__always)
    var hasPrice: Bool { rawValue & (Self.hasPriceFrom.rawValue | Self.hasPriceTo.rawValue) != 0 }
}
