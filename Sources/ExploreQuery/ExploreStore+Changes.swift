import Dispatch

/// Applying change batches: a batch is resolved into one net transition per listing, then applied in phases, one
/// structure at a time, instead of change by change.
///
/// Why: an id changed several times in a batch is indexed once, at its end state; each phase is a short loop
/// over one structure, taking it `inout` (one exclusivity check per batch instead of one per access); and the
/// sort orders take their share of the batch sorted, in one ascending pass that routes each entry onwards from
/// the previous one. Readers never see the intermediate states: ``ExploreIndex`` applies a batch under its
/// write lock.
extension ExploreStore {
    /// One listing's net change in a batch: its slot's record before and after. A record whose flags lack
    /// ``SlotFlags/live`` stands for "no live row" (a new listing's `old`, a deleted listing's `new`).
    ///
    /// Each id and each slot appears in at most one transition of a batch (only an id's last change counts,
    /// and slots freed by the batch are reused only by later batches), so the phases may handle transitions
    /// in any order, structure by structure.
    struct RowTransition {
        var slot: Int
        var old: SlotRecord
        var new: SlotRecord

        var wasLive: Bool { old.flags & SlotFlags.live.rawValue != 0 }
        var isLive: Bool { new.flags & SlotFlags.live.rawValue != 0 }
        /// Whether any column or index changes (strings aside).
        var changes: Bool { old != new }
    }

    /// Where a transition's title and image URL come from: the change at `position` in the batch (ignored for
    /// a row that is no longer live), unless the slot keeps the strings it holds
    /// (``ListingChange/upsertKeepingText(_:)``).
    struct RowText {
        var position: Int
        var kept = false
    }

    /// Applies `batch`: each id ends as its last change in the batch says, as if the changes ran one by one.
    func apply(_ batch: ListingChangeBatch) {
        let changes = batch.changes
        let (transitions, texts) = changes.withUnsafeBufferPointer { resolve($0) }
        // Only transitions that change something reach the indexes (a re-sent identical row does not).
        let changed = transitions.filter(\.changes)
        // Each phase owns structures no other phase touches, so the phases of a large batch run on all cores:
        // the batch holds the index's write lock, and readers wait for it whatever the writer does meanwhile.
        // Listed longest first (as measured), so two threads end close together. `nonisolated(unsafe)` is sound:
        // no two phases touch the same stored property, and the caller holds the store exclusively.
        nonisolated(unsafe) let phases: [() -> Void] = [
            { Self.updateCube(changed, &self.cube) },
            { self.updatePriceOrders(changed) },
            {
                Self.updateRanges(changed, low: &self.priceLowRanges, high: &self.priceHighRanges,
                                  created: &self.createdRanges, spread: &self.maxPriceSpread)
            },
            { Self.writeStrings(transitions, texts, changes, titles: &self.titles, imageURLs: &self.imageURLs) },
            { self.updatePostings(changed) },
            { Self.updateCreatedOrder(changed, &self.createdOrder) },
            {
                Self.writeColumns(changed, records: &self.records, areas: &self.areaOfSlot,
                                  lowCodes: &self.priceLowCodes, highCodes: &self.priceHighCodes,
                                  createdCodes: &self.createdCodes)
            },
        ]
        if transitions.count >= Self.parallelApplyThreshold {
            DispatchQueue.concurrentPerform(iterations: phases.count) { phases[$0]() }
        } else {
            for phase in phases { phase() }
        }
    }

    /// Transitions from which a batch's phases run in parallel: below it, handing phases to other threads costs
    /// more than it saves (a wake-up is tens of microseconds; a transition is a few).
    static let parallelApplyThreshold = 64

    /// Works out each listing's transition, allocates slots for new listings and frees deleted ones.
    private func resolve(_ changes: UnsafeBufferPointer<ListingChange>) -> ([RowTransition], [RowText]) {
        // The last change of an id decides its end state; earlier ones are never visible to a reader.
        var lastByID: [ListingID: Int] = [:]
        lastByID.reserveCapacity(changes.count)
        var superseded = [Bool](repeating: false, count: changes.count)
        // Changes with an earlier one for their id: their listing's text may differ from the stored text.
        var repeated = [Bool](repeating: false, count: changes.count)
        for position in changes.indices {
            if let earlier = lastByID.updateValue(position, forKey: changes[position].id) {
                superseded[earlier] = true
                repeated[position] = true
            }
        }
        let positions = changes.indices.filter { !superseded[$0] }
        let drafts = draftTransitions(changes, positions, repeated)

        var transitions: [RowTransition] = []
        transitions.reserveCapacity(positions.count)
        var texts: [RowText] = []
        texts.reserveCapacity(positions.count)
        var freed: [(slot: UInt32, city: UInt32, area: UInt32)] = []
        for (draft, position) in zip(drafts, positions) {
            let old = draft.old
            if draft.isUpsert {
                // A draft lacks the new record only when the row brings a string the dictionaries lack.
                guard let new = draft.new ?? fallbackRecord(for: changes[position], replacing: old) else { continue }
                let slot = draft.slot.map(Int.init) ?? allocateSlot(for: new.id, city: new.city, area: new.area)
                transitions.append(RowTransition(slot: slot, old: old, new: new))
                texts.append(RowText(position: position, kept: draft.keepsText))
            } else if let slot = draft.slot {
                slotByID.removeValue(forKey: old.id)
                var new = old
                new.flags = 0
                transitions.append(RowTransition(slot: Int(slot), old: old, new: new))
                texts.append(RowText(position: position))
                freed.append((slot, old.city, old.area))
            }
        }
        // Freed only now, so no slot is both freed and reused within the batch.
        for (slot, city, area) in freed { freeSlots.free(slot, city: city, area: area) }
        return (transitions, texts)
    }

    /// What a change can learn from the store without changing it: its slot, the slot's record, and (for an
    /// upsert whose strings all have codes) the new record.
    private struct Draft {
        var isUpsert = false
        var slot: UInt32?
        var old = SlotRecord()
        var new: SlotRecord?
        /// The slot keeps its strings (see ``RowText``).
        var keepsText = false
    }

    /// The drafts of the changes at `positions`, on all cores for a large batch: these are the batch's id
    /// lookups and record reads, each a likely cache miss, and as they only read the store they may run side
    /// by side.
    private func draftTransitions(_ changes: UnsafeBufferPointer<ListingChange>, _ positions: [Int],
                                  _ repeated: [Bool]) -> [Draft] {
        var drafts = [Draft](repeating: Draft(), count: positions.count)
        let parts = positions.count >= Self.parallelApplyThreshold ? 2 : 1
        // Read once for the batch: each read of a stored property of this class is an exclusivity check, and
        // each call passing a dictionary on retains its buffers, for which both threads would contend.
        let source = DraftSource(slotByID: slotByID, records: records, dictionaries: textDictionaries)
        drafts.withUnsafeMutableBufferPointer { buffer in
            // Sound: each part writes its own range of `buffer`; both only read `source` and `changes`.
            nonisolated(unsafe) let (output, input) = (buffer, changes)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let range = (positions.count * part / parts)..<(positions.count * (part + 1) / parts)
                // In three passes, so the first two are short loops of independent loads whose cache misses
                // overlap: one draft at a time, each waited for its slot and then for its record, as the rest
                // of the draft kept the processor from reaching the next draft's loads.
                for k in range { output[k].slot = source.slotByID[input[positions[k]].id] }
                for k in range { if let slot = output[k].slot { output[k].old = source.records[Int(slot)] } }
                for k in range {
                    let position = positions[k]
                    source.complete(&output[k], input[position].indexedRow, repeated: repeated[position])
                }
            }
        }
        return drafts
    }

    /// What a draft reads from the store (see ``draftTransitions(_:_:_:)``).
    private struct DraftSource {
        let slotByID: SlotMap
        let records: [SlotRecord]
        let dictionaries: TextDictionaries

        /// Completes a draft whose slot and old record are known: an upsert of `indexed` (see
        /// ``ListingChange/indexedRow``), or a delete when nil.
        @inline(__always)
        func complete(_ draft: inout Draft, _ indexed: (row: ExploreListing, keepsText: Bool)?, repeated: Bool) {
            guard let (row, keepsText) = indexed else { return }
            draft.isUpsert = true
            if keepsText && !repeated && draft.old.flags & SlotFlags.live.rawValue != 0 {
                draft.new = ExploreStore.record(for: row, codes: draft.old)
                draft.keepsText = true
            } else {
                draft.new = ExploreStore.knownRecord(for: row, replacing: draft.old, in: dictionaries)
            }
        }
    }

    private func fallbackRecord(for change: ListingChange, replacing old: SlotRecord) -> SlotRecord? {
        guard let row = change.row else { return nil }
        return record(for: row, replacing: old)
    }

    /// The record `row` is stored as, adding its strings to the dictionaries when they are new.
    func record(for row: ExploreListing, replacing old: SlotRecord) -> SlotRecord {
        if let record = Self.knownRecord(for: row, replacing: old, in: textDictionaries) { return record }
        _ = statusDictionary.encode(row.status)
        _ = cityDictionary.encode(row.city)
        _ = areaDictionary.encode(row.area)
        guard let record = Self.knownRecord(for: row, replacing: old, in: textDictionaries) else {
            preconditionFailure("strings just encoded")
        }
        return record
    }

    /// The status, city and area dictionaries.
    typealias TextDictionaries = (status: StringDictionary, city: StringDictionary, area: StringDictionary)

    var textDictionaries: TextDictionaries { (statusDictionary, cityDictionary, areaDictionary) }

    /// The record `row` is stored as, or nil when its status, city or area has no code in `dictionaries` yet.
    /// `old` is the slot's current record: its code is reused when the string is unchanged (the usual case, and
    /// short strings compare inline), which skips hashing the string.
    static func knownRecord(for row: ExploreListing, replacing old: SlotRecord,
                            in dictionaries: TextDictionaries) -> SlotRecord? {
        let wasLive = old.flags & SlotFlags.live.rawValue != 0
        func code(_ dictionary: StringDictionary, _ oldCode: UInt32, _ value: String) -> UInt32? {
            wasLive && dictionary.values[Int(oldCode)] == value ? oldCode : dictionary.code(of: value)
        }
        guard let status = code(dictionaries.status, old.status, row.status),
              let city = code(dictionaries.city, old.city, row.city),
              let area = code(dictionaries.area, old.area, row.area) else { return nil }
        var codes = SlotRecord()
        codes.status = status
        codes.city = city
        codes.area = area
        return record(for: row, codes: codes)
    }

    /// The record `row` is stored as, with the status, city and area codes of `codes`.
    static func record(for row: ExploreListing, codes: SlotRecord) -> SlotRecord {
        var record = codes
        record.id = row.id
        record.type = row.listingType.rawValue
        record.locationID = row.locationID
        record.priceLow = row.priceFrom ?? row.priceTo ?? 0
        record.priceHigh = row.priceTo ?? row.priceFrom ?? 0
        record.bedrooms = row.bedrooms ?? 0
        record.bathrooms = row.bathrooms ?? 0
        record.createdAt = row.createdAt
        var flag: SlotFlags = .live
        if row.priceFrom != nil { flag.insert(.hasPriceFrom) }
        if row.priceTo != nil { flag.insert(.hasPriceTo) }
        if row.bedrooms != nil { flag.insert(.hasBedrooms) }
        if row.bathrooms != nil { flag.insert(.hasBathrooms) }
        record.flags = flag.rawValue
        return record
    }

    /// Records and value codes.
    static func writeColumns(_ transitions: [RowTransition], records: inout [SlotRecord], areas: inout [UInt32],
                             lowCodes: inout ValueCodes, highCodes: inout ValueCodes, createdCodes: inout ValueCodes) {
        for t in transitions {
            records[t.slot] = t.new
            guard t.isLive else { continue }
            areas[t.slot] = t.new.area
            // Codes always encode the stored value (0 for an unpriced row), so a later edit compares against it.
            let fresh = !t.wasLive
            if fresh || t.new.priceLow != t.old.priceLow { lowCodes.set(t.slot, t.new.priceLow) }
            if fresh || t.new.priceHigh != t.old.priceHigh { highCodes.set(t.slot, t.new.priceHigh) }
            if fresh || t.new.createdAt != t.old.createdAt { createdCodes.set(t.slot, t.new.createdAt) }
        }
    }

    /// Live rows and the postings of type, status, city, area, location, bedrooms and bathrooms: a posting is
    /// touched only when its field (or the row's liveness) changed. Few changes of a typical batch (new and
    /// deleted rows) reach this phase, so it runs straight through.
    func updatePostings(_ transitions: [RowTransition]) {
        Self.updatePostings(transitions, live: &live, types: &typePostings, statuses: &statusPostings,
                            cities: &cityPostings, areas: &areaPostings, locations: &locationPostings,
                            bedrooms: &bedroomPostings, bathrooms: &bathroomPostings)
    }

    private static func updatePostings(
        _ transitions: [RowTransition], live: inout Bitset, types typePostings: inout [Bitset],
        statuses statusPostings: inout [Bitset], cities cityPostings: inout [Bitset],
        areas areaPostings: inout BlockPostings, locations locationPostings: inout [Int64: SortedSlots],
        bedrooms bedroomPostings: inout [Int32: Bitset], bathrooms bathroomPostings: inout [Int32: Bitset]
    ) {
        for t in transitions {
            let (old, new, slot) = (t.old, t.new, t.slot)
            let (wasLive, isLive) = (t.wasLive, t.isLive)
            if wasLive != isLive {
                if isLive { live.insert(slot) } else { live.remove(slot) }
            }
            // Whether a field's posting must move: the row appeared, disappeared, or the field changed.
            func moves(_ changed: Bool) -> Bool { wasLive != isLive || (isLive && changed) }
            if moves(old.type != new.type) {
                if wasLive { typePostings[Int(old.type)].remove(slot) }
                if isLive { typePostings[Int(new.type)].insert(slot) }
            }
            if moves(old.status != new.status) {
                if wasLive { statusPostings[Int(old.status)].remove(slot) }
                if isLive { Self.insert(slot, code: new.status, into: &statusPostings) }
            }
            if moves(old.city != new.city) {
                if wasLive { cityPostings[Int(old.city)].remove(slot) }
                if isLive { Self.insert(slot, code: new.city, into: &cityPostings) }
            }
            if moves(old.area != new.area) {
                if wasLive { areaPostings.remove(slot, code: old.area) }
                if isLive { areaPostings.insert(slot, code: new.area) }
            }
            if moves(old.locationID != new.locationID) {
                if wasLive {
                    locationPostings[old.locationID]?.remove(UInt32(slot))
                    if locationPostings[old.locationID]?.slots.isEmpty == true { locationPostings[old.locationID] = nil }
                }
                if isLive { locationPostings[new.locationID, default: SortedSlots()].insert(UInt32(slot)) }
            }
            let oldBedrooms = wasLive && SlotFlags(rawValue: old.flags).contains(.hasBedrooms) ? old.bedrooms : nil
            let newBedrooms = isLive && SlotFlags(rawValue: new.flags).contains(.hasBedrooms) ? new.bedrooms : nil
            if oldBedrooms != newBedrooms {
                if let oldBedrooms { bedroomPostings[oldBedrooms]?.remove(slot) }
                if let newBedrooms { bedroomPostings[newBedrooms, default: Bitset()].insert(slot) }
            }
            let oldBathrooms = wasLive && SlotFlags(rawValue: old.flags).contains(.hasBathrooms) ? old.bathrooms : nil
            let newBathrooms = isLive && SlotFlags(rawValue: new.flags).contains(.hasBathrooms) ? new.bathrooms : nil
            if oldBathrooms != newBathrooms {
                if let oldBathrooms { bathroomPostings[oldBathrooms]?.remove(slot) }
                if let newBathrooms { bathroomPostings[newBathrooms, default: Bitset()].insert(slot) }
            }
        }
    }

    /// The range bitmaps of both price ends and of the creation time.
    static func updateRanges(_ transitions: [RowTransition], low: inout RangeBitmaps, high: inout RangeBitmaps,
                             created: inout RangeBitmaps, spread: inout Int64) {
        for t in transitions {
            let slot = t.slot
            guard t.isLive else {
                // The slot is being freed: `release` leaves the range bits to be moved by the slot's next row.
                low.release(slot)
                high.release(slot)
                created.release(slot)
                continue
            }
            let hadPrice = t.wasLive && SlotFlags(rawValue: t.old.flags).hasPrice
            if SlotFlags(rawValue: t.new.flags).hasPrice {
                if hadPrice {
                    if t.new.priceLow != t.old.priceLow { low.update(slot, to: t.new.priceLow) }
                    if t.new.priceHigh != t.old.priceHigh { high.update(slot, to: t.new.priceHigh) }
                } else {
                    low.insert(slot, t.new.priceLow)
                    high.insert(slot, t.new.priceHigh)
                }
                noteSpread(t.new.priceLow, t.new.priceHigh, in: &spread)
            } else if hadPrice || !t.wasLive {
                // A reused slot may still carry its previous row's range bits (see `RangeBitmaps.release`).
                low.remove(slot)
                high.remove(slot)
            }
            if !t.wasLive {
                created.insert(slot, t.new.createdAt)
            } else if t.new.createdAt != t.old.createdAt {
                created.update(slot, to: t.new.createdAt)
            }
        }
    }

    /// The group cube: a row that keeps its group and price costs nothing here.
    static func updateCube(_ transitions: [RowTransition], _ cube: inout GroupCube) {
        for t in transitions {
            let oldKey = t.wasLive ? cubeKey(t.old) : nil
            let newKey = t.isLive ? cubeKey(t.new) : nil
            let oldPrice = t.wasLive ? cubePrice(t.old) : nil
            let newPrice = t.isLive ? cubePrice(t.new) : nil
            if let oldKey, oldKey == newKey {
                if let oldPrice, let newPrice {
                    if oldPrice != newPrice { cube.movePrice(key: oldKey, from: oldPrice, to: newPrice) }
                    continue
                }
                if oldPrice == nil && newPrice == nil { continue }
            }
            if let oldKey { cube.remove(key: oldKey, price: oldPrice) }
            if let newKey { cube.add(key: newKey, price: newPrice) }
        }
    }

    /// The price orders: their removals, then their insertions, sorted and applied in one ascending pass.
    func updatePriceOrders(_ transitions: [RowTransition]) {
        typealias Entry = SortedSlotList.Entry
        var priced = SortedSlotList.Changes()
        var unpricedChanges = SortedSlotList.Changes()
        /// A row's place in the price orders: which list, and its key there.
        func pricePlace(_ record: SlotRecord, live: Bool) -> (priced: Bool, key: Int64)? {
            guard live else { return nil }
            return SlotFlags(rawValue: record.flags).hasPrice ? (true, record.priceLow) : (false, 0)
        }
        for t in transitions {
            let oldPlace = pricePlace(t.old, live: t.wasLive)
            let newPlace = pricePlace(t.new, live: t.isLive)
            guard oldPlace?.priced != newPlace?.priced || oldPlace?.key != newPlace?.key else { continue }
            let s = UInt32(t.slot)
            if let oldPlace {
                let entry = Entry(key: oldPlace.key, id: t.old.id, slot: s)
                if oldPlace.priced { priced.removals.append(entry) } else { unpricedChanges.removals.append(entry) }
            }
            if let newPlace {
                let entry = Entry(key: newPlace.key, id: t.new.id, slot: s)
                if newPlace.priced { priced.insertions.append(entry) } else { unpricedChanges.insertions.append(entry) }
            }
        }
        priceOrder.apply(&priced)
        unpriced.apply(&unpricedChanges)
    }

    /// The creation-time order, as the price orders.
    static func updateCreatedOrder(_ transitions: [RowTransition], _ order: inout SortedSlotList) {
        var created = SortedSlotList.Changes()
        for t in transitions {
            let oldCreated = t.wasLive ? t.old.createdAt : nil
            let newCreated = t.isLive ? t.new.createdAt : nil
            guard oldCreated != newCreated else { continue }
            let s = UInt32(t.slot)
            if let oldCreated { created.removals.append(.init(key: oldCreated, id: t.old.id, slot: s)) }
            if let newCreated { created.insertions.append(.init(key: newCreated, id: t.new.id, slot: s)) }
        }
        order.apply(&created)
    }

    /// Titles and image URLs: a new row's are written, an existing row's only when they differ, a deleted
    /// row's cleared.
    static func writeStrings(_ transitions: [RowTransition], _ texts: [RowText], _ changes: [ListingChange],
                             titles: inout StringArena, imageURLs: inout StringArena) {
        // Every string the main loop reads is read once before, in loops of independent loads whose cache misses
        // overlap. Why: the main loop retains each incoming string (an atomic write, which the processor does not
        // overlap with the next) and compares it with the stored one, so there the misses queued one by one.
        var touched: UInt8 = 0
        var titleSpans: [StringArena.Span] = []
        var imageSpans: [StringArena.Span] = []
        for (t, text) in zip(transitions, texts) where !text.kept && t.isLive {
            touched &+= changes[text.position].firstTextBytes
            if t.wasLive {
                titleSpans.append(titles.span(t.slot))
                imageSpans.append(imageURLs.span(t.slot))
            }
        }
        touched &+= titles.touch(titleSpans) &+ imageURLs.touch(imageSpans)
        for (t, text) in zip(transitions, texts) where !text.kept {
            guard t.isLive else {
                titles.set(t.slot, nil)
                imageURLs.set(t.slot, nil)
                continue
            }
            changes[text.position].withText { title, imageURL in
                if !t.wasLive || !titles.equals(t.slot, title) { titles.set(t.slot, title) }
                if !t.wasLive || !imageURLs.equals(t.slot, imageURL) { imageURLs.set(t.slot, imageURL) }
            }
        }
        // Never true (no bytes touched without transitions); it keeps the reads above from being removed.
        if touched == 0xA5 && transitions.isEmpty { preconditionFailure("no bytes are touched without transitions") }
    }

    static func noteSpread(_ low: Int64, _ high: Int64, in spread: inout Int64) {
        let (difference, overflow) = high.subtractingReportingOverflow(low)
        spread = Swift.max(spread, overflow ? Int64.max : difference)
    }
}

extension ListingChange {
    /// The row of an upsert with an empty title and no image URL, and whether the upsert keeps the text the
    /// store holds; nil for a delete.
    ///
    /// Read in place, field by field. Why: a copy of the change's row (which binding the payload of
    /// `changes[i]` and passing it on makes) retains its title and image URL, and each retain is an atomic
    /// write to a string object the cache rarely holds, which the processor cannot overlap with the next
    /// one. Those retains were most of a draft's time. The strings phase, which needs the text, reads it in
    /// place first (``firstTextBytes``).
    @inline(__always)
    fileprivate var indexedRow: (row: ExploreListing, keepsText: Bool)? {
        switch self {
        case .upsert(let row): (row.withoutText, false)
        case .upsertKeepingText(let row): (row.withoutText, true)
        case .delete: nil
        }
    }

    /// The first bytes of the row's title and image URL, read in place (see ``ExploreStore/writeStrings``).
    @inline(__always)
    fileprivate var firstTextBytes: UInt8 {
        switch self {
        case .upsert(let row): (row.title.utf8.first ?? 0) &+ (row.primaryImageURL?.utf8.first ?? 0)
        case .upsertKeepingText(let row): (row.title.utf8.first ?? 0) &+ (row.primaryImageURL?.utf8.first ?? 0)
        case .delete: 0
        }
    }

    /// Calls `body` with the row's title and image URL.
    @inline(__always)
    fileprivate func withText(_ body: (String, String?) -> Void) {
        switch self {
        case .upsert(let row): body(row.title, row.primaryImageURL)
        case .upsertKeepingText(let row): body(row.title, row.primaryImageURL)
        case .delete: break
        }
    }
}

extension ExploreListing {
    /// This row with an empty title and no image URL, built field by field (see ``ListingChange/indexedRow``).
    @inline(__always)
    fileprivate var withoutText: ExploreListing {
        ExploreListing(
            id: id, listingType: listingType, status: status, title: "", locationID: locationID, priceFrom: priceFrom,
            priceTo: priceTo, bedrooms: bedrooms, bathrooms: bathrooms, primaryImageURL: nil, city: city, area: area,
            createdAt: createdAt)
    }
}
