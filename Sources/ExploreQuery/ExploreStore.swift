/// The columnar store and its indexes; not thread-safe on its own, owned by an ``ExploreIndex`` once served.
///
/// Layout: every listing lives in a row slot; each column is an array indexed by slot, freed slots are reused
/// through a free list, and `slotByID` maps listing ids to slots. Low-cardinality text is dictionary encoded,
/// titles and image URLs live in byte arenas. Indexes over slots: bitset postings for listing type, status,
/// city, bedrooms and bathrooms; block postings for area; sorted slot lists for location id; range-encoded bitmaps for the
/// price ends and creation time; and sorted slot lists for every sort order.
public final class ExploreStore {
    // MARK: Columns

    var ids: [Int64] = []
    var types: [UInt8] = []
    /// ``SlotFlags`` per slot.
    var flags: [UInt8] = []
    var statusCodes: [UInt32] = []
    var cityCodes: [UInt32] = []
    var areaCodes: [UInt32] = []
    var locationIDs: [Int64] = []
    /// Effective price range: `priceLow = priceFrom ?? priceTo`, `priceHigh = priceTo ?? priceFrom`; the
    /// flags record which ends the row really had, so the original optionals can be rebuilt.
    var priceLow: [Int64] = []
    var priceHigh: [Int64] = []
    var bedrooms: [Int32] = []
    var bathrooms: [Int32] = []
    var createdAt: [Int64] = []
    var titles = StringArena()
    var imageURLs = StringArena()

    var statusDictionary = StringDictionary()
    var cityDictionary = StringDictionary()
    var areaDictionary = StringDictionary()

    var slotByID: [Int64: UInt32] = [:]
    var freeSlots: [UInt32] = []

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
    var slotCount: Int { ids.count }
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
        var positionByID: [Int64: Int] = [:]
        var unique: [ExploreListing] = []
        positionByID.reserveCapacity(rows.underestimatedCount)
        unique.reserveCapacity(rows.underestimatedCount)
        for row in rows {
            if let position = positionByID[row.id] {
                unique[position] = row
            } else {
                positionByID[row.id] = unique.count
                unique.append(row)
            }
        }
        positionByID = [:]
        // Cluster slots by city and area so their postings are dense where they are used. The sort orders small
        // integer keys (each name's rank among the distinct names, so the order is the strings' order) and row
        // positions, not the rows: no string comparisons, no large values moved.
        func ranks(_ names: Set<String>) -> [String: Int32] {
            var rank: [String: Int32] = [:]
            rank.reserveCapacity(names.count)
            for (index, name) in names.sorted().enumerated() { rank[name] = Int32(index) }
            return rank
        }
        let cityRank = ranks(Set(unique.lazy.map(\.city)))
        let areaRank = ranks(Set(unique.lazy.map(\.area)))
        var placements = unique.indices.map { position in
            let row = unique[position]
            return Placement(city: cityRank[row.city] ?? 0, area: areaRank[row.area] ?? 0, id: row.id,
                             position: position)
        }
        placements.sort()

        var lows: [Int64] = []
        var highs: [Int64] = []
        var created: [Int64] = []
        lows.reserveCapacity(unique.count)
        highs.reserveCapacity(unique.count)
        created.reserveCapacity(unique.count)
        for row in unique {
            if let low = row.priceFrom ?? row.priceTo { lows.append(low) }
            if let high = row.priceTo ?? row.priceFrom { highs.append(high) }
            created.append(row.createdAt)
        }
        priceLowRanges = RangeBitmaps(bounds: Self.defaultPriceBounds.filter { PriceBuckets.lowerBounds.contains($0) }
                                      + Self.quantiles(&lows, count: 64))
        priceHighRanges = RangeBitmaps(bounds: Self.defaultPriceBounds.filter { PriceBuckets.lowerBounds.contains($0) }
                                       + Self.quantiles(&highs, count: 64))
        createdRanges = RangeBitmaps(bounds: Self.quantiles(&created, count: 32))
        priceLowCodes = ValueCodes(bounds: lows)
        priceHighCodes = ValueCodes(bounds: highs)
        lows = []
        highs = []
        created = []

        reserve(unique.count)
        slotByID.reserveCapacity(unique.count)
        for placement in placements {
            let row = unique[placement.position]
            insertColumns(row, slot: allocateSlot(for: row.id))
        }
        for slot in 0..<slotCount { indexRow(slot, includingOrders: false) }
        buildOrders()
        cube = GroupCube(slotCount: slotCount, key: { self.hasFlag($0, .live) ? self.cubeKey($0) : nil },
                         price: { self.cubePrice($0) })
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

    private func reserve(_ count: Int) {
        ids.reserveCapacity(count)
        types.reserveCapacity(count)
        flags.reserveCapacity(count)
        statusCodes.reserveCapacity(count)
        cityCodes.reserveCapacity(count)
        areaCodes.reserveCapacity(count)
        locationIDs.reserveCapacity(count)
        priceLow.reserveCapacity(count)
        priceHigh.reserveCapacity(count)
        bedrooms.reserveCapacity(count)
        bathrooms.reserveCapacity(count)
        createdAt.reserveCapacity(count)
    }

    // MARK: Reading rows

    func row(id: ListingID) -> ExploreListing? {
        guard let slot = slotByID[id] else { return nil }
        return row(slot: Int(slot))
    }

    func row(slot: Int) -> ExploreListing {
        let flag = SlotFlags(rawValue: flags[slot])
        return ExploreListing(
            id: ids[slot], listingType: ListingType(rawValue: types[slot]) ?? .existing,
            status: statusDictionary.values[Int(statusCodes[slot])], title: titles.get(slot) ?? "",
            locationID: locationIDs[slot],
            priceFrom: flag.contains(.hasPriceFrom) ? priceLow[slot] : nil,
            priceTo: flag.contains(.hasPriceTo) ? priceHigh[slot] : nil,
            bedrooms: flag.contains(.hasBedrooms) ? bedrooms[slot] : nil,
            bathrooms: flag.contains(.hasBathrooms) ? bathrooms[slot] : nil,
            primaryImageURL: imageURLs.get(slot),
            city: cityDictionary.values[Int(cityCodes[slot])], area: areaDictionary.values[Int(areaCodes[slot])],
            createdAt: createdAt[slot])
    }

    /// The rows of `slots`, in order, read a column at a time: one column's loads for every row are
    /// independent, so their cache misses overlap instead of queueing row by row.
    func rows(slots: [Int]) -> [ExploreListing] {
        let (ids, types, flags, statusCodes, cityCodes, areaCodes) = (ids, types, flags, statusCodes, cityCodes, areaCodes)
        let (locationIDs, priceLow, priceHigh, bedrooms, bathrooms, createdAt) =
            (locationIDs, priceLow, priceHigh, bedrooms, bathrooms, createdAt)
        let idValues = slots.map { ids[$0] }
        let typeValues = slots.map { types[$0] }
        let flagValues = slots.map { flags[$0] }
        let statusValues = slots.map { statusCodes[$0] }
        let cityValues = slots.map { cityCodes[$0] }
        let areaValues = slots.map { areaCodes[$0] }
        let locationValues = slots.map { locationIDs[$0] }
        let lowValues = slots.map { priceLow[$0] }
        let highValues = slots.map { priceHigh[$0] }
        let bedroomValues = slots.map { bedrooms[$0] }
        let bathroomValues = slots.map { bathrooms[$0] }
        let createdValues = slots.map { createdAt[$0] }
        let titleValues = slots.map { titles.get($0) }
        let imageValues = slots.map { imageURLs.get($0) }
        return slots.indices.map { i in
            let flag = SlotFlags(rawValue: flagValues[i])
            return ExploreListing(
                id: idValues[i], listingType: ListingType(rawValue: typeValues[i]) ?? .existing,
                status: statusDictionary.values[Int(statusValues[i])], title: titleValues[i] ?? "",
                locationID: locationValues[i],
                priceFrom: flag.contains(.hasPriceFrom) ? lowValues[i] : nil,
                priceTo: flag.contains(.hasPriceTo) ? highValues[i] : nil,
                bedrooms: flag.contains(.hasBedrooms) ? bedroomValues[i] : nil,
                bathrooms: flag.contains(.hasBathrooms) ? bathroomValues[i] : nil,
                primaryImageURL: imageValues[i],
                city: cityDictionary.values[Int(cityValues[i])], area: areaDictionary.values[Int(areaValues[i])],
                createdAt: createdValues[i])
        }
    }

    /// Bytes held by columns, strings and indexes, from the buffers' capacities.
    var memoryBytes: Int {
        var total = ids.capacity * 8 + types.capacity + flags.capacity + statusCodes.capacity * 4
        total += cityCodes.capacity * 4 + areaCodes.capacity * 4 + locationIDs.capacity * 8
        total += priceLow.capacity * 8 + priceHigh.capacity * 8 + bedrooms.capacity * 4 + bathrooms.capacity * 4
        total += createdAt.capacity * 8 + titles.memoryBytes + imageURLs.memoryBytes
        total += statusDictionary.memoryBytes + cityDictionary.memoryBytes + areaDictionary.memoryBytes
        // A native Swift dictionary stores keys and values in separate arrays plus one metadata bit per bucket.
        total += slotByID.capacity * (8 + 4) + slotByID.capacity / 8 + freeSlots.capacity * 4
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
        total += priceLowCodes.memoryBytes + priceHighCodes.memoryBytes
        total += priceOrder.memoryBytes + unpriced.memoryBytes + createdOrder.memoryBytes
        total += cube.memoryBytes
        return total
    }

    // MARK: Changes

    func apply(_ batch: ListingChangeBatch) {
        for change in batch.changes {
            switch change {
            case .upsert(let row): upsert(row)
            case .delete(let id): delete(id)
            }
        }
    }

    func delete(_ id: ListingID) {
        guard let slot = slotByID.removeValue(forKey: id) else { return }
        unindexRow(Int(slot))
        titles.set(Int(slot), nil)
        imageURLs.set(Int(slot), nil)
        flags[Int(slot)] = 0
        freeSlots.append(slot)
    }

    func upsert(_ row: ExploreListing) {
        if let slot = slotByID[row.id] {
            update(Int(slot), to: row)
        } else {
            let slot = allocateSlot(for: row.id)
            insertColumns(row, slot: slot)
            indexRow(slot, includingOrders: true)
        }
    }

    private func allocateSlot(for id: ListingID) -> Int {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = Int(free)
            ids[slot] = id
        } else {
            slot = ids.count
            if ids.count == ids.capacity { reserve(ids.count + ids.count / 8 + 1024) }
            ids.append(id)
            types.append(0)
            flags.append(0)
            statusCodes.append(0)
            cityCodes.append(0)
            areaCodes.append(0)
            locationIDs.append(0)
            priceLow.append(0)
            priceHigh.append(0)
            bedrooms.append(0)
            bathrooms.append(0)
            createdAt.append(0)
            titles.ensureSlots(slot + 1)
            imageURLs.ensureSlots(slot + 1)
            priceLowCodes.grow(to: slot + 1)
            priceHighCodes.grow(to: slot + 1)
        }
        slotByID[id] = UInt32(slot)
        return slot
    }

    /// Writes every column of `row` into `slot` (indexes untouched).
    private func insertColumns(_ row: ExploreListing, slot: Int) {
        types[slot] = row.listingType.rawValue
        statusCodes[slot] = encode(row.status, in: &statusDictionary)
        cityCodes[slot] = encode(row.city, in: &cityDictionary)
        areaCodes[slot] = encode(row.area, in: &areaDictionary)
        locationIDs[slot] = row.locationID
        var flag: SlotFlags = .live
        priceLow[slot] = row.priceFrom ?? row.priceTo ?? 0
        priceHigh[slot] = row.priceTo ?? row.priceFrom ?? 0
        priceLowCodes.set(slot, priceLow[slot])
        priceHighCodes.set(slot, priceHigh[slot])
        if row.priceFrom != nil { flag.insert(.hasPriceFrom) }
        if row.priceTo != nil { flag.insert(.hasPriceTo) }
        bedrooms[slot] = row.bedrooms ?? 0
        if row.bedrooms != nil { flag.insert(.hasBedrooms) }
        bathrooms[slot] = row.bathrooms ?? 0
        if row.bathrooms != nil { flag.insert(.hasBathrooms) }
        createdAt[slot] = row.createdAt
        flags[slot] = flag.rawValue
        titles.set(slot, row.title)
        imageURLs.set(slot, row.primaryImageURL)
    }

    private func encode(_ value: String, in dictionary: inout StringDictionary) -> UInt32 {
        dictionary.encode(value)
    }

    private func hasPrice(_ slot: Int) -> Bool {
        SlotFlags(rawValue: flags[slot]).hasPrice
    }

    private func hasFlag(_ slot: Int, _ flag: SlotFlags) -> Bool {
        SlotFlags(rawValue: flags[slot]).contains(flag)
    }

    /// Adds `slot` (columns already written) to every index.
    private func indexRow(_ slot: Int, includingOrders: Bool) {
        let s = UInt32(slot)
        live.insert(slot)
        typePostings[Int(types[slot])].insert(slot)
        Self.insert(slot, code: statusCodes[slot], into: &statusPostings)
        Self.insert(slot, code: cityCodes[slot], into: &cityPostings)
        let area = Int(areaCodes[slot])
        areaPostings.insert(slot, code: UInt32(area))
        locationPostings[locationIDs[slot], default: SortedSlots()].insert(s)
        if hasFlag(slot, .hasBedrooms) { bedroomPostings[bedrooms[slot], default: Bitset()].insert(slot) }
        if hasFlag(slot, .hasBathrooms) { bathroomPostings[bathrooms[slot], default: Bitset()].insert(slot) }
        if hasPrice(slot) {
            priceLowRanges.insert(slot, priceLow[slot])
            priceHighRanges.insert(slot, priceHigh[slot])
            noteSpread(priceLow[slot], priceHigh[slot])
        } else {
            // A reused slot may still carry its previous row's range bits (see `RangeBitmaps.release`).
            priceLowRanges.remove(slot)
            priceHighRanges.remove(slot)
        }
        createdRanges.insert(slot, createdAt[slot])
        if includingOrders {
            insertOrders(slot)
            cube.add(slot: slot, key: cubeKey(slot), price: cubePrice(slot))
        }
    }

    /// The cube group of `slot`'s current column values.
    func cubeKey(_ slot: Int) -> GroupCube.Key {
        let hasBedrooms = hasFlag(slot, .hasBedrooms)
        return GroupCube.Key(type: types[slot], status: statusCodes[slot], city: cityCodes[slot],
                             bedrooms: hasBedrooms ? bedrooms[slot] : Int32.min, hasBedrooms: hasBedrooms)
    }

    /// `slot`'s effective price range, if it has a price.
    func cubePrice(_ slot: Int) -> (low: Int64, high: Int64)? {
        hasPrice(slot) ? (priceLow[slot], priceHigh[slot]) : nil
    }

    private func noteSpread(_ low: Int64, _ high: Int64) {
        let (spread, overflow) = high.subtractingReportingOverflow(low)
        maxPriceSpread = Swift.max(maxPriceSpread, overflow ? Int64.max : spread)
    }

    private static func insert(_ slot: Int, code: UInt32, into postings: inout [Bitset]) {
        while postings.count <= Int(code) { postings.append(Bitset()) }
        postings[Int(code)].insert(slot)
    }

    private func insertOrders(_ slot: Int, price: Bool = true, created: Bool = true) {
        let s = UInt32(slot)
        let id = ids[slot]
        if price {
            if hasPrice(slot) {
                priceOrder.insert(key: priceLow[slot], id: id, slot: s)
            } else {
                unpriced.insert(key: 0, id: id, slot: s)
            }
        }
        if created { createdOrder.insert(key: createdAt[slot], id: id, slot: s) }
    }

    private func removeOrders(_ slot: Int, price: Bool = true, created: Bool = true) {
        let id = ids[slot]
        if price {
            if hasPrice(slot) {
                priceOrder.remove(key: priceLow[slot], id: id)
            } else {
                unpriced.remove(key: 0, id: id)
            }
        }
        if created { createdOrder.remove(key: createdAt[slot], id: id) }
    }

    /// Builds every sort order from scratch (bulk load).
    private func buildOrders() {
        // Sorts plain (key, id, slot) values: the comparator touches no class storage, so a million-row bulk load
        // pays no exclusivity check or closure call per comparison (this was the bulk load's largest cost).
        struct Entry: Comparable {
            var key: Int64
            var id: Int64
            var slot: UInt32
            static func < (a: Entry, b: Entry) -> Bool { a.key < b.key || (a.key == b.key && a.id < b.id) }
        }
        let (ids, flags, priceLow, createdAt) = (self.ids, self.flags, self.priceLow, self.createdAt)
        var priced: [Entry] = []
        var unpricedSlots: [Entry] = []
        var all: [Entry] = []
        priced.reserveCapacity(ids.count)
        all.reserveCapacity(ids.count)
        for slot in 0..<ids.count {
            let flag = SlotFlags(rawValue: flags[slot])
            guard flag.contains(.live) else { continue }
            let (id, s) = (ids[slot], UInt32(slot))
            if flag.hasPrice {
                priced.append(Entry(key: priceLow[slot], id: id, slot: s))
            } else {
                unpricedSlots.append(Entry(key: 0, id: id, slot: s))
            }
            all.append(Entry(key: createdAt[slot], id: id, slot: s))
        }
        func build(_ entries: inout [Entry]) -> SortedSlotList {
            entries.sort()
            return SortedSlotList(sorted: entries.map(\.key), ids: entries.map(\.id), slots: entries.map(\.slot))
        }
        priceOrder = build(&priced)
        unpriced = build(&unpricedSlots)
        createdOrder = build(&all)
    }

    /// Removes `slot` from every index (columns still hold its values).
    private func unindexRow(_ slot: Int) {
        removeOrders(slot)
        cube.remove(slot: slot, price: cubePrice(slot))
        live.remove(slot)
        typePostings[Int(types[slot])].remove(slot)
        statusPostings[Int(statusCodes[slot])].remove(slot)
        cityPostings[Int(cityCodes[slot])].remove(slot)
        areaPostings.remove(slot, code: areaCodes[slot])
        removeLocation(slot)
        if hasFlag(slot, .hasBedrooms) { bedroomPostings[bedrooms[slot]]?.remove(slot) }
        if hasFlag(slot, .hasBathrooms) { bathroomPostings[bathrooms[slot]]?.remove(slot) }
        // The slot is being freed: `release` leaves the range bits to be moved by the slot's next row.
        priceLowRanges.release(slot)
        priceHighRanges.release(slot)
        createdRanges.release(slot)
    }

    private func removeLocation(_ slot: Int) {
        let location = locationIDs[slot]
        locationPostings[location]?.remove(UInt32(slot))
        if locationPostings[location]?.slots.isEmpty == true { locationPostings[location] = nil }
    }

    /// Moves `slot` to `row`'s values, touching only the indexes of fields that changed.
    private func update(_ slot: Int, to row: ExploreListing) {
        let s = UInt32(slot)
        let old = SlotFlags(rawValue: flags[slot])
        let newLow = row.priceFrom ?? row.priceTo
        let newHigh = row.priceTo ?? row.priceFrom
        let oldHasPrice = hasPrice(slot)
        let oldCubePrice = cubePrice(slot)
        let priceOrderChanged = oldHasPrice != (newLow != nil) || (newLow != nil && newLow! != priceLow[slot])
        let createdChanged = row.createdAt != createdAt[slot]
        if priceOrderChanged || createdChanged {
            removeOrders(slot, price: priceOrderChanged, created: createdChanged)
        }

        if row.listingType.rawValue != types[slot] {
            typePostings[Int(types[slot])].remove(slot)
            types[slot] = row.listingType.rawValue
            typePostings[Int(types[slot])].insert(slot)
        }
        // Comparing with the stored value first (usually equal, and short strings compare inline) skips
        // hashing the string on every upsert.
        let status = statusDictionary.values[Int(statusCodes[slot])] == row.status
            ? statusCodes[slot] : statusDictionary.encode(row.status)
        if status != statusCodes[slot] {
            statusPostings[Int(statusCodes[slot])].remove(slot)
            statusCodes[slot] = status
            Self.insert(slot, code: status, into: &statusPostings)
        }
        let city = cityDictionary.values[Int(cityCodes[slot])] == row.city
            ? cityCodes[slot] : cityDictionary.encode(row.city)
        if city != cityCodes[slot] {
            cityPostings[Int(cityCodes[slot])].remove(slot)
            cityCodes[slot] = city
            Self.insert(slot, code: city, into: &cityPostings)
        }
        let area = areaDictionary.values[Int(areaCodes[slot])] == row.area
            ? areaCodes[slot] : areaDictionary.encode(row.area)
        if area != areaCodes[slot] {
            areaPostings.remove(slot, code: areaCodes[slot])
            areaCodes[slot] = area
            areaPostings.insert(slot, code: area)
        }
        if row.locationID != locationIDs[slot] {
            removeLocation(slot)
            locationIDs[slot] = row.locationID
            locationPostings[row.locationID, default: SortedSlots()].insert(s)
        }

        var flag: SlotFlags = .live
        if row.priceFrom != nil { flag.insert(.hasPriceFrom) }
        if row.priceTo != nil { flag.insert(.hasPriceTo) }
        if row.bedrooms != nil { flag.insert(.hasBedrooms) }
        if row.bathrooms != nil { flag.insert(.hasBathrooms) }

        // Price range bitmaps.
        if let newLow, let newHigh, oldHasPrice {
            priceLowRanges.update(slot, to: newLow)
            priceHighRanges.update(slot, to: newHigh)
        } else if oldHasPrice {
            priceLowRanges.remove(slot)
            priceHighRanges.remove(slot)
        } else if let newLow, let newHigh {
            priceLowRanges.insert(slot, newLow)
            priceHighRanges.insert(slot, newHigh)
        }
        // Codes always encode the stored value (0 for an unpriced row), so a later edit compares against it.
        if (newLow ?? 0) != priceLow[slot] { priceLowCodes.set(slot, newLow ?? 0) }
        if (newHigh ?? 0) != priceHigh[slot] { priceHighCodes.set(slot, newHigh ?? 0) }
        priceLow[slot] = newLow ?? 0
        priceHigh[slot] = newHigh ?? 0
        if let newLow, let newHigh { noteSpread(newLow, newHigh) }

        let newBedrooms = row.bedrooms
        if newBedrooms != (old.contains(.hasBedrooms) ? bedrooms[slot] : nil) {
            if old.contains(.hasBedrooms) { bedroomPostings[bedrooms[slot]]?.remove(slot) }
            if let newBedrooms { bedroomPostings[newBedrooms, default: Bitset()].insert(slot) }
        }
        bedrooms[slot] = newBedrooms ?? 0
        let newBathrooms = row.bathrooms
        if newBathrooms != (old.contains(.hasBathrooms) ? bathrooms[slot] : nil) {
            if old.contains(.hasBathrooms) { bathroomPostings[bathrooms[slot]]?.remove(slot) }
            if let newBathrooms { bathroomPostings[newBathrooms, default: Bitset()].insert(slot) }
        }
        bathrooms[slot] = newBathrooms ?? 0

        if createdChanged {
            createdRanges.update(slot, to: row.createdAt)
            createdAt[slot] = row.createdAt
        }
        flags[slot] = flag.rawValue
        let newCubeKey = cubeKey(slot)
        let newCubePrice = cubePrice(slot)
        if newCubeKey != cube.key(ofSlot: slot) {
            cube.remove(slot: slot, price: oldCubePrice)
            cube.add(slot: slot, key: newCubeKey, price: newCubePrice)
        } else if let oldCubePrice, let newCubePrice {
            if oldCubePrice != newCubePrice { cube.movePrice(slot: slot, from: oldCubePrice, to: newCubePrice) }
        } else if oldCubePrice != nil || newCubePrice != nil {
            cube.remove(slot: slot, price: oldCubePrice)
            cube.add(slot: slot, key: newCubeKey, price: newCubePrice)
        }
        if priceOrderChanged || createdChanged {
            insertOrders(slot, price: priceOrderChanged, created: createdChanged)
        }
        if !titles.equals(slot, row.title) { titles.set(slot, row.title) }
        if !imageURLs.equals(slot, row.primaryImageURL) { imageURLs.set(slot, row.primaryImageURL) }
    }
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
