@testable import ExploreQuery
import Testing

/// The storage structures against plain arrays under random inserts and removes.
@Suite struct StorageTests {
    @Test(arguments: [UInt64(1), 2, 3])
    func rankedKeysMatchASortedArray(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var keys = RankedKeys()
        var model: [Int64] = []
        // Few distinct values so duplicates straddle chunk boundaries; enough keys for many chunk splits.
        for step in 0..<6_000 {
            let key = Int64.random(in: -40...40, using: &random) * 1_000
            if model.isEmpty || Int.random(in: 0..<3, using: &random) > 0 || step < 1_000 {
                keys.insert(key)
                model.insert(key, at: model.firstIndex { $0 > key } ?? model.count)
            } else {
                let victim = model.randomElement(using: &random)!
                let removed = keys.remove(victim)
                #expect(removed)
                model.remove(at: model.firstIndex(of: victim)!)
                let removedAbsent = keys.remove(100_000)
                #expect(!removedAbsent, "absent keys are not removed")
            }
            // The inline extremes decide whole groups without a search: they must be exact after every change.
            if let first = model.first, let last = model.last {
                #expect(keys.minimum == first && keys.maximum == last, "step \(step)")
            }
            if step % 500 == 0 || step == 5_999 {
                #expect(keys.elements == model)
                #expect(keys.count == model.count)
                for probe in stride(from: Int64(-41_000), through: 41_000, by: 500) {
                    #expect(keys.count(below: probe) == model.filter { $0 < probe }.count)
                    #expect(keys.count(notAbove: probe) == model.filter { $0 <= probe }.count)
                    for width in [Int64(-500), 0, 500, 3_000, 90_000] {
                        let high = probe + width
                        #expect(keys.count(from: probe, through: high) == model.filter { $0 >= probe && $0 <= high }.count)
                    }
                }
                #expect(keys.count(from: Int64.min, through: Int64.max) == model.count)
            }
        }
        #expect(keys.chunks.allSatisfy { $0.count <= RankedKeys.maximumChunk })
    }

    /// Codes order like their values, a value on a bound has a code of its own, and `threshold` decides
    /// `v < x` from the code alone except between two bounds.
    @Test(arguments: [UInt64(1), 2, 3])
    func valueCodesOrderLikeValues(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let codes = ValueCodes(bounds: (0..<50).map { _ in Int64.random(in: -100...100, using: &random) },
                               maximumBounds: Int.random(in: 1...60, using: &random))
        let probes = (Int64(-110)...110).map { $0 } + [Int64.min, Int64.max]
        for a in probes {
            for b in probes where a < b { #expect(codes.code(a) <= codes.code(b)) }
            #expect((codes.code(a) & 1 == 1) == codes.bounds.contains(a))
            let (below, exactAtBound) = codes.threshold(a)
            for v in probes {
                let code = codes.code(v)
                if code < below { #expect(v < a) }
                if code > below || (code == below && exactAtBound) { #expect(v >= a) }
            }
        }
    }

    /// `LessThan` with and without 16-bit codes (few, thinned bounds, so many rows share a code) against a plain
    /// comparison, while slots change values, lose them and are reused.
    @Test(arguments: [UInt64(1), 2, 3])
    func lessThanWithCodesMatchesComparison(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let slots = 700
        func value() -> Int64 { Int64.random(in: -30...30, using: &random) * 1_000 + (Bool.random(using: &random) ? 0 : 7) }
        var ranges = RangeBitmaps(bounds: (0..<5).map { _ in value() })
        var codes = ValueCodes(bounds: (0..<40).map { _ in value() }, maximumBounds: Int.random(in: 0...9, using: &random))
        #expect(codes.bounds == codes.bounds.sorted() && Set(codes.bounds).count == codes.bounds.count)
        var values = [Int64](repeating: 0, count: slots)
        var present = [Bool](repeating: false, count: slots)
        for round in 0..<30 {
            for _ in 0..<200 {
                let slot = Int.random(in: 0..<slots, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0:
                    if present[slot] { ranges.remove(slot) }
                    present[slot] = false
                case 1:
                    if present[slot] { ranges.release(slot) }
                    present[slot] = false
                default:
                    values[slot] = value()
                    if present[slot] { ranges.update(slot, to: values[slot]) } else { ranges.insert(slot, values[slot]) }
                    present[slot] = true
                }
                codes.set(slot, values[slot])
            }
            let x = round % 3 == 0 ? (codes.bounds.randomElement(using: &random) ?? 0) : value() + Int64.random(in: -2...2, using: &random)
            for useCodes in [false, true] {
                let records = values.map { value in
                    var record = SlotRecord()
                    record.priceLow = value
                    return record
                }
                let test = LessThan(ranges, x, records: records, column: .priceLow, codes: useCodes ? codes : nil)
                for word in 0..<((slots + 63) / 64) {
                    var need: UInt64 = 0
                    var expected: UInt64 = 0
                    for bit in 0..<64 where word * 64 + bit < slots && present[word * 64 + bit] {
                        if Bool.random(using: &random) { need |= 1 << UInt64(bit) }
                        if values[word * 64 + bit] < x { expected |= 1 << UInt64(bit) }
                    }
                    #expect(test.word(word, need: need) & need == expected & need, "x \(x) word \(word) codes \(useCodes)")
                }
            }
        }
    }

    /// The batched range count (the cube's, over many groups at once) against each set's model, for sets from
    /// empty to many chunks, indices in any order and repeated.
    @Test(arguments: [UInt64(1), 2, 3])
    func rankedKeysCountManySetsAtOnce(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var models: [[Int64]] = []
        var sets: [RankedKeys] = []
        for size in [0, 1, 70, 500, 3_000, 64] {
            var model = (0..<size).map { _ in Int64.random(in: -50...50, using: &random) * 100 }
            var set = RankedKeys()
            for key in model { set.insert(key) }
            model.sort()
            models.append(model)
            sets.append(Bool.random(using: &random) ? set : RankedKeys(sorted: model))
        }
        for _ in 0..<300 {
            let low = Int64.random(in: -5_200...5_200, using: &random)
            let high = Bool.random(using: &random) ? low : low + Int64.random(in: 0...6_000, using: &random)
            let indices = (0..<Int.random(in: 0...10, using: &random)).map { _ in Int.random(in: 0..<sets.count, using: &random) }
            let expected = indices.map { i in models[i].filter { $0 >= low && $0 <= high }.count }
            #expect(RankedKeys.counts(from: low, through: high, of: sets, at: indices) == expected, "\(low)...\(high)")
        }
    }

    /// The one binary search (branch-free) against counting every element, on sorted arrays of every length
    /// up to 70 with many duplicates, for keys between, on and beyond the elements.
    @Test func countBelowMatchesALinearCount() {
        var random = SeededRandom(seed: 5)
        for length in 0...70 {
            let values = (0..<length).map { _ in Int64.random(in: -20...20, using: &random) }.sorted()
            values.withUnsafeBufferPointer { buffer in
                for key in Int64(-22)...22 {
                    #expect(buffer.countBelow(key, orEqual: false) == values.filter { $0 < key }.count)
                    #expect(buffer.countBelow(key, orEqual: true) == values.filter { $0 <= key }.count)
                }
            }
        }
    }

    @Test func rankedKeysBuiltFromSortedKeysAnswerRanks() {
        let sorted = (0..<1_000).map { Int64($0 / 3) }
        var keys = RankedKeys(sorted: sorted)
        #expect(keys.count(below: 10) == 30)
        #expect(keys.count(notAbove: 10) == 33)
        #expect(keys.count(notAbove: Int64.max) == 1_000)
        #expect(keys.count(below: Int64.min) == 0)
        keys.insert(10)
        #expect(keys.count(notAbove: 10) == 34)
        let removedThree = keys.remove(0) && keys.remove(0) && keys.remove(0)
        #expect(removedThree)
        let removedFourth = keys.remove(0)
        #expect(!removedFourth)
        #expect(keys.count(below: 10) == 27)
        #expect(RankedKeys(sorted: []).count(below: 5) == 0)
    }

    @Test func groupCubeCountsFollowAddsAndRemoves() {
        var cube = GroupCube()
        let lisbon = GroupCube.Key(type: 1, status: 0, city: 0, bedrooms: 2, hasBedrooms: true)
        let porto = GroupCube.Key(type: 0, status: 0, city: 1, bedrooms: Int32.min, hasBedrooms: false)
        cube.add(key: lisbon, price: (150_000, 150_000))
        cube.add(key: lisbon, price: nil)
        cube.add(key: porto, price: (90_000, 450_000))
        let l = cube.index(of: lisbon)!
        let p = cube.index(of: porto)!
        let lisbonPrices = Int(cube.priceGroupOf[l])
        #expect(cube.counts[l] == 2 && cube.pricedCount(lisbonPrices) == 1)
        #expect(cube.points[lisbonPrices].elements == [150_000] && cube.lows[lisbonPrices].count == 0)
        #expect(Self.buckets(cube, l) == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Self.buckets(cube, p) == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
        cube.movePrice(key: lisbon, from: (150_000, 150_000), to: (150_000, 1_200_000))
        // A point price becoming a range moves from the points to both ends.
        #expect(cube.points[lisbonPrices].count == 0)
        #expect(cube.lows[lisbonPrices].elements == [150_000] && cube.highs[lisbonPrices].elements == [1_200_000])
        cube.movePrice(key: lisbon, from: (150_000, 1_200_000), to: (175_000, 1_300_000))
        #expect(cube.lows[lisbonPrices].elements == [175_000] && cube.highs[lisbonPrices].elements == [1_300_000])
        cube.movePrice(key: lisbon, from: (175_000, 1_300_000), to: (150_000, 150_000))
        cube.movePrice(key: lisbon, from: (150_000, 150_000), to: (160_000, 160_000))
        #expect(cube.points[lisbonPrices].elements == [160_000] && cube.pricedCount(lisbonPrices) == 1)
        cube.movePrice(key: lisbon, from: (160_000, 160_000), to: (150_000, 1_200_000))
        #expect(Self.buckets(cube, l) == [0, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        cube.remove(key: porto, price: (90_000, 450_000))
        #expect(cube.counts[p] == 0 && cube.pricedCount(Int(cube.priceGroupOf[p])) == 0)
        #expect(Self.buckets(cube, p).allSatisfy { $0 == 0 })
        #expect(cube.index(of: porto) == p, "an emptied group keeps its index")
    }

    static func buckets(_ cube: GroupCube, _ c: Int) -> [Int32] {
        Array(cube.buckets[c * GroupCube.bucketCount..<(c + 1) * GroupCube.bucketCount])
    }

    @Test func rankedKeysReplaceKeepsOrder() {
        var random = SeededRandom(seed: 4)
        var keys = RankedKeys(sorted: (0..<2_000).map { Int64($0) * 10 })
        var model = keys.elements
        for _ in 0..<3_000 {
            let old = model.randomElement(using: &random)!
            let new = old + Int64.random(in: -300...300, using: &random) * (Bool.random(using: &random) ? 1 : 40)
            keys.replace(old, with: new)
            model.remove(at: model.firstIndex(of: old)!)
            model.insert(new, at: model.firstIndex { $0 > new } ?? model.count)
            #expect(keys.minimum == model.first! && keys.maximum == model.last!)
        }
        #expect(keys.elements == model)
        for probe in stride(from: Int64(-20_000), through: 40_000, by: 777) {
            #expect(keys.count(below: probe) == model.filter { $0 < probe }.count)
        }
        // The batched count over several sets, for ranges missing, covering and cutting each of them.
        let sets = [keys, RankedKeys(), RankedKeys(sorted: Array(model.prefix(100))), keys]
        for low in stride(from: Int64(-20_000), through: 40_000, by: 2_333) {
            for width in [Int64(0), 50, 5_000, 60_000] {
                let expected = [0, 2, 1, 3].map { sets[$0].count(from: low, through: low + width) }
                #expect(RankedKeys.counts(from: low, through: low + width, of: sets, at: [0, 2, 1, 3]) == expected)
                #expect(expected[0] == model.filter { $0 >= low && $0 <= low + width }.count)
            }
        }
    }

    @Test func bulkBuiltCubeEqualsIncrementalCube() {
        var random = SeededRandom(seed: 9)
        var keys: [GroupCube.Key?] = []
        var prices: [(low: Int64, high: Int64)?] = []
        for _ in 0..<3_000 {
            let bedrooms = Int32.random(in: -1...3, using: &random)
            keys.append(Int.random(in: 0..<10, using: &random) == 0 ? nil : GroupCube.Key(
                type: UInt8.random(in: 0...1, using: &random), status: UInt32.random(in: 0...1, using: &random),
                city: UInt32.random(in: 0...4, using: &random), bedrooms: bedrooms < 0 ? Int32.min : bedrooms,
                hasBedrooms: bedrooms >= 0))
            let low = Int64.random(in: 0...40, using: &random) * 50_000
            prices.append(Bool.random(using: &random) ? (low, low + Int64.random(in: 0...3, using: &random) * 100_000) : nil)
        }
        let bulk = GroupCube(slotCount: keys.count, key: { keys[$0] }, price: { prices[$0] })
        var incremental = GroupCube()
        for slot in keys.indices.reversed() {
            if let key = keys[slot] { incremental.add(key: key, price: prices[slot]) }
        }
        #expect(bulk.keys.count == incremental.keys.count)
        for (c, key) in bulk.keys.enumerated() {
            let other = incremental.index(of: key)!
            #expect(bulk.counts[c] == incremental.counts[other])
            let bulkGroup = Int(bulk.priceGroupOf[c])
            let otherGroup = Int(incremental.priceGroupOf[other])
            #expect(bulk.priceKeys[bulkGroup] == incremental.priceKeys[otherGroup])
            #expect(bulk.points[bulkGroup].elements == incremental.points[otherGroup].elements)
            #expect(bulk.lows[bulkGroup].elements == incremental.lows[otherGroup].elements)
            #expect(bulk.highs[bulkGroup].elements == incremental.highs[otherGroup].elements)
            #expect(Self.buckets(bulk, c) == Self.buckets(incremental, other))
        }
    }
}

/// Block postings and the bounded heap against plain models.
@Suite struct BlockStorageTests {
    @Test func blockPostingsMatchASetPerValue() {
        var random = SeededRandom(seed: 21)
        var postings = BlockPostings()
        var model: [UInt32: Set<Int>] = [:]
        for _ in 0..<20_000 {
            let slot = Int.random(in: 0..<30_000, using: &random)
            let code = UInt32.random(in: 0..<6, using: &random)
            if Bool.random(using: &random) {
                postings.insert(slot, code: code)
                model[code, default: []].insert(slot)
            } else {
                postings.remove(slot, code: code)
                model[code]?.remove(slot)
            }
        }
        for code in UInt32(0)..<7 {
            let expected = model[code] ?? []
            let found = Set((0..<30_000).filter { postings.contains($0, code: code) })
            #expect(found == expected, "code \(code)")
            // Every block holding a slot of the value is in its summary.
            for slot in expected {
                let block = slot >> 12
                #expect(postings.valueBlocks[Int(code)][block >> 6] & (1 << UInt64(block & 63)) != 0)
            }
        }
        #expect(postings.page(block: 99, code: 0) == nil)
        // Readers skip the words outside a page's span: every set bit must lie within it.
        for block in postings.blockEntries.indices {
            for entry in postings.blockEntries[block] {
                let page = Int(entry.page)
                let span = postings.span(ofPage: page, within: BlockPostings.pageWords)
                for word in 0..<BlockPostings.pageWords where !span.contains(word) {
                    #expect(postings.pages[page * BlockPostings.pageWords + word] == 0, "page \(page) word \(word)")
                }
            }
        }
    }

    @Test func boundedHeapKeepsTheSmallestInOrder() {
        var random = SeededRandom(seed: 22)
        for capacity in [0, 1, 7, 100] {
            var heap = BoundedHeap(capacity: capacity)
            var all: [BoundedHeap.Entry] = []
            for slot in 0..<1_000 {
                let entry = (group: UInt8.random(in: 0...1, using: &random), key: Int64.random(in: 0...50, using: &random),
                             id: Int64(slot * 37 % 1_000), slot: slot)
                all.append(entry)
                heap.offer(entry)
            }
            let expected = all.sorted(by: BoundedHeap.less).prefix(capacity).map(\.slot)
            #expect(heap.sorted().map(\.slot) == expected, "capacity \(capacity)")
        }
    }

    /// A bulk load leaves room in its slot-indexed columns and string arenas, so the rows of the batches after a
    /// load or rebuild do not reallocate them: at a million rows that copy held the write lock for 90 ms.
    @Test func rowsAddedAfterABulkLoadDoNotReallocateItsColumns() {
        var generator = RandomListings(seed: 9, idRange: 1...100_000)
        let rows = (1...4_000).map { generator.listing(id: Int64($0)) }
        let store = ExploreStore(bulk: rows)
        func addresses() -> [UnsafeRawPointer?] {
            [
                store.records.withUnsafeBytes(\.baseAddress), store.areaOfSlot.withUnsafeBytes(\.baseAddress),
                store.titles.bytes.withUnsafeBytes(\.baseAddress), store.imageURLs.bytes.withUnsafeBytes(\.baseAddress),
                store.priceLowCodes.codes.withUnsafeBytes(\.baseAddress),
                store.createdCodes.codes.withUnsafeBytes(\.baseAddress),
            ]
        }
        let before = addresses()
        #expect(store.slotByID.spareArrayCapacity >= rows.count / 8, "the ids' array has room for new ids too")
        // A city the load never saw takes fresh slots at the end instead of reusing freed ones.
        let added = (0..<100).map { offset in
            var row = generator.listing(id: 200_000 + Int64(offset))
            row.city = "Newtown"
            row.title = "A new listing with a title as long as most, number \(offset)"
            return row
        }
        store.apply(ListingChangeBatch(added.map { .upsert($0) }))
        #expect(store.slotCount > rows.count)
        #expect(addresses() == before)
        #expect(store.rows(slots: added.map { Int(store.slotByID[$0.id]!) }) == added)
    }

    /// New rows take slots their own city and area freed, so slots stay clustered by city (a city's search skips
    /// the blocks of other cities) and area; a city with no such slot gets a run of new slots of its own.
    @Test func newRowsReuseSlotsTheirCityFreed() {
        var generator = RandomListings(seed: 5, idRange: 1...1_000)
        let rows = (1...400).map { generator.listing(id: Int64($0)) }
        let store = ExploreStore(bulk: rows)
        let slotCount = store.slotCount
        let victims = Array(rows.prefix(60))
        var freedByPlace: [String: Set<Int>] = [:]
        for row in victims { freedByPlace[row.city + "/" + row.area, default: []].insert(Int(store.slotByID[row.id]!)) }
        store.apply(ListingChangeBatch(victims.map { .delete($0.id) }))
        var fresh = victims.enumerated().map { offset, row in
            var row = row
            row.id = 10_000 + Int64(offset)
            return row
        }
        fresh.shuffle(using: &generator.random)
        store.apply(ListingChangeBatch(fresh.map { .upsert($0) }))
        #expect(store.slotCount == slotCount)
        for row in fresh {
            #expect(freedByPlace[row.city + "/" + row.area]?.contains(Int(store.slotByID[row.id]!)) == true,
                    "listing \(row.id) reuses a slot of its own city and area")
        }
        var elsewhere = rows[100]
        elsewhere.id = 20_000
        elsewhere.city = "Nowhere"
        store.apply(ListingChangeBatch([.upsert(elsewhere)]))
        #expect(store.slotCount == slotCount + ExploreStore.appendRun)
        #expect(store.slotByID[elsewhere.id] == UInt32(slotCount))
        var next = elsewhere
        next.id = 20_001
        var other = rows[101]
        other.id = 20_002
        other.city = "Somewhere"
        store.apply(ListingChangeBatch([.upsert(next), .upsert(other)]))
        #expect(store.slotByID[next.id] == UInt32(slotCount + 1), "the city's run continues")
        #expect(store.slotByID[other.id] == UInt32(slotCount + ExploreStore.appendRun), "another city starts its own run")
        #expect(store.slotCount == slotCount + 2 * ExploreStore.appendRun)
        // A slot freed by one area is kept for that area; a new area of the city starts a run instead.
        let leaving = rows[200]
        let freedSlot = store.slotByID[leaving.id]!
        store.apply(ListingChangeBatch([.delete(leaving.id)]))
        var newcomer = leaving
        newcomer.id = 20_003
        newcomer.area = "Elsewhere"
        store.apply(ListingChangeBatch([.upsert(newcomer)]))
        #expect(store.slotByID[newcomer.id] == UInt32(slotCount + 2 * ExploreStore.appendRun))
        var returning = leaving
        returning.id = 20_004
        store.apply(ListingChangeBatch([.upsert(returning)]))
        #expect(store.slotByID[returning.id] == freedSlot)
    }

    /// ``SlotMap`` against a dictionary under random inserts, replacements and removals of ids from a dense
    /// sequence, a sparse range, negative ids and the extremes of `Int64`, from empty and from a bulk load.
    @Test(arguments: [UInt64(1), 2, 3])
    func slotMapMatchesADictionary(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let loaded = (0..<2_000).map { _ in Int64.random(in: 500...5_000, using: &random) }
        let distinct = Array(Set(loaded)).shuffled(using: &random)
        for start in [[], distinct] {
            var map = SlotMap(slotsOf: start)
            var model = Dictionary(uniqueKeysWithValues: start.enumerated().map { ($0.element, UInt32($0.offset)) })
            var nextID = Int64(5_001)
            for step in 0..<20_000 {
                let id: Int64
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<4:
                    id = nextID
                    nextID += Int64.random(in: 1...3, using: &random)
                case 4..<7: id = model.keys.randomElement(using: &random) ?? 0
                case 7: id = Int64.random(in: -3_000...(-1), using: &random)
                case 8: id = Int64.random(in: 0...20, using: &random) + (Bool.random(using: &random) ? Int64.max - 20 : Int64.min)
                default: id = Int64.random(in: 1_000_000_000...1_000_001_000, using: &random)
                }
                if Int.random(in: 0..<3, using: &random) == 0 {
                    #expect(map.removeValue(forKey: id) == model.removeValue(forKey: id), "step \(step): remove \(id)")
                } else {
                    let slot = UInt32.random(in: 0..<1_000_000, using: &random)
                    map[id] = slot
                    model[id] = slot
                }
                #expect(map[id] == model[id], "step \(step): id \(id)")
                #expect(map.count == model.count, "step \(step)")
            }
            for (id, slot) in model { #expect(map[id] == slot, "id \(id)") }
            for absent in [Int64.min, -5_000, 0, 4_999, nextID, Int64.max] where model[absent] == nil {
                #expect(map[absent] == nil, "id \(absent)")
            }
            #expect(map.ids.sorted() == model.keys.sorted())
        }
    }

    /// The map's array stays proportional to the ids it maps: ids far past the rest go to its dictionary.
    @Test func slotMapArrayGrowsWithTheIdsItMaps() {
        var map = SlotMap(slotsOf: Array(1...1_000))
        for id in Int64(1_000_000_000)..<1_000_001_000 { map[id] = UInt32(id - 999_999_000) }
        for id in Int64(1_001)...3_000 { map[id] = UInt32(id) }
        #expect(map.count == 4_000)
        #expect(map[1_000_000_500] == 1_500 && map[2_500] == 2_500 && map[500] == 499)
        #expect(map.memoryBytes < 200_000, "\(map.memoryBytes) bytes for 4,000 ids")
    }

    /// ``FreeSlots`` against a plain model under random frees, takes and new runs: every slot given out is free,
    /// of the asked city, of the asked area whenever the city holds one, and a new run is asked for only when
    /// nothing else may be given.
    @Test(arguments: [UInt64(1), 2, 3])
    func freeSlotsFollowTheirOrderOfPreference(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var slots = FreeSlots(heldLimit: 16)
        // The model: free slots by city and area, and each city's run tail.
        var freed: [UInt32: [UInt32: Set<UInt32>]] = [:]
        var tails: [UInt32: Set<UInt32>] = [:]
        var used: [UInt32: (city: UInt32, area: UInt32)] = [:]
        var next: UInt32 = 0
        var otherAreaTakes = 0
        for step in 0..<20_000 {
            let city = UInt32.random(in: 0..<3, using: &random)
            // After a while, city 0 stops adding rows in area 0: its freed slots pile up until the limit.
            let area = UInt32.random(in: city == 0 && step > 2_000 ? 1..<4 : 0..<4, using: &random)
            if !used.isEmpty && Int.random(in: 0..<10, using: &random) < 4 {
                let victim = used.keys.randomElement(using: &random)!
                let place = used.removeValue(forKey: victim)!
                slots.free(victim, city: place.city, area: place.area)
                freed[place.city, default: [:]][place.area, default: []].insert(victim)
                continue
            }
            let held = freed[city, default: [:]].values.reduce(0) { $0 + $1.count }
            let slot: UInt32
            if let (taken, inPlace) = slots.take(city: city, area: area) {
                slot = taken
                #expect(inPlace == (freed[city]?[area]?.isEmpty == false))
                if freed[city]?[area]?.isEmpty == false {
                    #expect(freed[city]![area]!.remove(taken) != nil, "a slot its own area freed")
                } else if tails[city]?.isEmpty == false {
                    #expect(tails[city]!.min() == taken, "the next slot of the city's run")
                    tails[city]!.remove(taken)
                } else {
                    #expect(held >= slots.heldLimit, "another area's slot only past the limit")
                    otherAreaTakes += 1
                    let owner = freed[city]?.first { $0.value.contains(taken) }?.key
                    #expect(owner != nil, "a slot the city freed")
                    if let owner { freed[city]![owner]!.remove(taken) }
                }
            } else {
                #expect(freed[city]?[area]?.isEmpty ?? true)
                #expect(tails[city]?.isEmpty ?? true)
                #expect(held < slots.heldLimit, "a new run while the city holds \(held) freed slots")
                slot = next
                slots.addRun(Int(next) + 1..<Int(next) + 8, city: city)
                tails[city] = Set(next + 1..<next + 8)
                next += 8
            }
            #expect(used[slot] == nil, "slot \(slot) is given out once")
            used[slot] = (city, area)
        }
        #expect(otherAreaTakes > 0, "the limit was reached")
    }
}
