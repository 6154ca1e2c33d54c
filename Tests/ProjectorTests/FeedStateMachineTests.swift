import DemoData
import Testing
@testable import Projector

/// A model of PostgreSQL transactions for the feed: xids in begin order, outbox ids in insert order, commits
/// and aborts in any order, snapshots computed as the server computes them.
struct TransactionModel {
    struct Transaction {
        var xid: UInt64
        var rows: [Int64] = []
        var state = State.running
        enum State { case running, committed, aborted }
    }

    var transactions: [Transaction] = []
    var nextXID: UInt64 = 100
    var nextRowID: Int64 = 1

    mutating func begin() -> Int {
        transactions.append(Transaction(xid: nextXID))
        nextXID += 1
        return transactions.count - 1
    }

    mutating func insert(_ transaction: Int) {
        transactions[transaction].rows.append(nextRowID)
        nextRowID += 1
    }

    /// As PostgreSQL builds it: xmax is one past the latest completed transaction, running transactions at or
    /// above it are not listed, xmin is the oldest running one (or xmax).
    var snapshot: TransactionSnapshot {
        let completed = transactions.filter { $0.state != .running }.map(\.xid)
        let xmax = (completed.max() ?? 99) + 1
        let running = transactions.filter { $0.state == .running && $0.xid < xmax }.map(\.xid)
        return TransactionSnapshot(xmin: min(running.min() ?? xmax, xmax), xmax: xmax, inProgress: running)
    }

    /// What the fetch statement returns: the committed rows of the window with the lowest ids, up to the limit,
    /// in no particular order (here reversed).
    func fetch(_ request: OutboxFeedStateMachine.FetchRequest, deleted: Set<Int64>)
        -> OutboxFeedStateMachine.FetchResult
    {
        let target = request.target ?? snapshot
        var entries: [OutboxEntry] = []
        for transaction in transactions where transaction.state == .committed {
            guard target.isVisible(transaction.xid), !request.low.isVisible(transaction.xid) else { continue }
            for row in transaction.rows where row > request.afterID && !deleted.contains(row) {
                entries.append(OutboxEntry(id: row, xid: transaction.xid, source: .listings, key: row))
            }
        }
        entries.sort { $0.id < $1.id }
        return .init(target: target, entries: entries.prefix(request.limit).reversed(), limit: request.limit)
    }
}

@Suite struct FeedStateMachineTests {
    @Test func snapshotTextRoundTripsAndRejectsGarbage() throws {
        let snapshot = try TransactionSnapshot(text: "10:20:12,15")
        #expect(snapshot == TransactionSnapshot(xmin: 10, xmax: 20, inProgress: [15, 12]))
        #expect(snapshot.description == "10:20:12,15")
        #expect(snapshot.isVisible(9) && snapshot.isVisible(11) && !snapshot.isVisible(12) && !snapshot.isVisible(20))
        for bad in ["", "1:2", "5:4:", "1:5:7", "a:b:", "1:5:2,,3", "1:5:0"] {
            #expect(throws: ProjectorError.self) { try TransactionSnapshot(text: bad) }
        }
    }

    /// The trap: the lower id commits after the higher one. A "last id seen" reader skips it; the feed does not.
    @Test func lowerIDCommittingLaterIsNotSkipped() {
        var model = TransactionModel()
        let first = model.begin()
        let second = model.begin()
        model.insert(first)   // id 1
        model.insert(second)  // id 2
        // The checkpoint is taken while both run; then the higher id commits first.
        var feed = OutboxFeedStateMachine(checkpoint: FeedPosition(low: model.snapshot), pageSize: 10)
        model.transactions[second].state = .committed
        var seen: [Int64] = []
        if case .deliver(let entries, _) = feed.fetched(model.fetch(feed.nextFetch(), deleted: [])) {
            seen += entries.map(\.id)
        }
        feed.batchCommitted()
        #expect(seen == [2])
        model.transactions[first].state = .committed
        if case .deliver(let entries, _) = feed.fetched(model.fetch(feed.nextFetch(), deleted: Set(seen))) {
            seen += entries.map(\.id)
        }
        #expect(seen == [2, 1])
    }

    /// Random interleavings of begin, insert, commit, abort, reads, batch commits and rollbacks: every committed
    /// row is applied exactly once, no aborted row ever, whatever the page size, and reads sized to the open
    /// batch's room (as the driver's) never let a batch pass its size limit. A naive "last id" reader run on the
    /// same histories must lose rows in some of them, which shows the histories exercise the trap.
    @Test(arguments: [1, 2, 3, 7, 1_000])
    func neverSkipsOrDuplicatesUnderRandomInterleavings(pageSize: Int) {
        var generator = SplitMix64(seed: UInt64(pageSize) &* 0x9E37_79B9)
        var naiveLostSomething = false
        for _ in 0..<300 {
            var model = TransactionModel()
            var feed = OutboxFeedStateMachine(
                checkpoint: FeedPosition(low: model.snapshot), pageSize: pageSize)
            // The window never closes a batch here (the clock stays at 0); a full batch is applied at once, as the
            // driver does, and any other at random.
            let maximumKeys = 1 + Int(generator.next() % 4)
            var batcher = ChangeBatcher(configuration: .init(window: .seconds(1), maximumKeys: maximumKeys))
            var applied: [Int64] = []
            var deleted: Set<Int64> = []
            var naiveLast: Int64 = 0
            var naiveApplied: Set<Int64> = []
            func finishBatch() {
                let batch = batcher.takeBatch()
                if generator.next() % 4 == 0 {
                    feed.batchRolledBack()
                } else {
                    applied += batch.entryIDs
                    deleted.formUnion(batch.entryIDs)
                    feed.batchCommitted()
                }
            }
            for _ in 0..<60 {
                let running = model.transactions.indices.filter { model.transactions[$0].state == .running }
                switch generator.next() % 7 {
                case 0: _ = model.begin()
                case 1, 2:
                    if let transaction = running.randomElement(using: &generator) { model.insert(transaction) }
                case 3:
                    if let transaction = running.randomElement(using: &generator) {
                        model.transactions[transaction].state = generator.next() % 5 == 0 ? .aborted : .committed
                    }
                case 4, 5:
                    let action = feed.fetched(model.fetch(feed.nextFetch(limit: batcher.room), deleted: deleted))
                    if case .deliver(let entries, _) = action, batcher.add(entries, now: 0) == .flushNow {
                        #expect(batcher.pendingKeys == maximumKeys)
                        finishBatch()
                    }
                    #expect(batcher.pendingKeys < maximumKeys)
                    // The naive reader: everything committed above the last id it saw.
                    for transaction in model.transactions where transaction.state == .committed {
                        for row in transaction.rows where row > naiveLast { naiveApplied.insert(row) }
                    }
                    naiveLast = max(naiveLast, naiveApplied.max() ?? 0)
                default:
                    finishBatch()
                }
            }
            // Finish every transaction and drain.
            for index in model.transactions.indices where model.transactions[index].state == .running {
                model.transactions[index].state = .committed
            }
            _ = batcher.takeBatch()
            feed.batchRolledBack()
            var rounds = 0
            while rounds < 10_000 {
                rounds += 1
                let action = feed.fetched(model.fetch(feed.nextFetch(), deleted: deleted))
                guard case .deliver(let entries, let more) = action else { break }
                applied += entries.map(\.id)
                deleted.formUnion(entries.map(\.id))
                feed.batchCommitted()
                if !more && entries.isEmpty { break }
            }
            let committed = model.transactions.filter { $0.state == .committed }.flatMap(\.rows)
            #expect(applied.sorted() == committed.sorted())
            #expect(Set(applied).count == applied.count)
            if !Set(committed).isSubset(of: naiveApplied) { naiveLostSomething = true }
        }
        #expect(naiveLostSomething)
    }
}

@Suite struct ChangeBatcherTests {
    private func entry(_ id: Int64, _ source: ProjectionDefinition.Source, key: Int64) -> OutboxEntry {
        OutboxEntry(id: id, xid: 1, source: source, key: key)
    }

    @Test func anIDChangedManyTimesIsRecomputedOnce() {
        var batcher = ChangeBatcher(configuration: .init(window: .milliseconds(5), maximumKeys: 100))
        let entries = (1...50).map { entry(Int64($0), $0 % 2 == 0 ? .media : .listings, key: 7) }
            + [entry(51, .locations, key: 3), entry(52, .locations, key: 3)]
        #expect(batcher.add(entries, now: 1_000) == .flushAt(nanoseconds: 5_001_000))
        let batch = batcher.takeBatch()
        #expect(batch.listingIDs == [7])
        #expect(batch.locationIDs == [3])
        #expect(batch.entryIDs == Array(1...52))
        #expect(batcher.tick(now: 10_000_000) == .idle)
    }

    @Test func windowAndSizeCloseTheBatch() {
        var batcher = ChangeBatcher(configuration: .init(window: .milliseconds(2), maximumKeys: 3))
        #expect(batcher.tick(now: 0) == .idle)
        #expect(batcher.room == 3)
        #expect(batcher.add([entry(1, .listings, key: 1)], now: 0) == .flushAt(nanoseconds: 2_000_000))
        #expect(batcher.add([entry(2, .listings, key: 1)], now: 1_000_000) == .flushAt(nanoseconds: 2_000_000))
        // Room counts keys, not entries: the second entry changed the same listing.
        #expect(batcher.room == 2)
        #expect(batcher.tick(now: 1_999_999) == .flushAt(nanoseconds: 2_000_000))
        #expect(batcher.tick(now: 2_000_000) == .flushNow)
        #expect(batcher.add([entry(3, .listings, key: 2), entry(4, .developments, key: 3)], now: 2_000_001)
            == .flushNow)
        #expect(batcher.room == 1)
        _ = batcher.takeBatch()
        #expect(batcher.room == 3)
        // A random property: the batch holds exactly the distinct keys added, whatever the order.
        var generator = SplitMix64(seed: 42)
        for _ in 0..<200 {
            var batcher = ChangeBatcher(configuration: .init(window: .zero, maximumKeys: 1_000))
            var listings: [Int64: Set<ProjectionDefinition.Source>] = [:]
            var locations: Set<Int64> = []
            var entries: [OutboxEntry] = []
            for id in 1...Int64(1 + generator.next() % 40) {
                let key = Int64(generator.next() % 10)
                let source = ProjectionDefinition.Source.allCases[Int(generator.next() % 5)]
                if source == .locations { locations.insert(key) } else { listings[key, default: []].insert(source) }
                entries.append(entry(id, source, key: key))
            }
            #expect(batcher.add(entries.shuffled(using: &generator), now: 0) == .flushNow)
            let batch = batcher.takeBatch()
            // Each listing goes whole, or to the column recompute covering every table its entries came from.
            var whole: [Int64] = []
            var byRecompute: [ColumnRecompute: [Int64]] = [:]
            for (id, sources) in listings {
                if let recompute = ProjectionDefinition.columnRecompute(covering: sources) {
                    byRecompute[recompute, default: []].append(id)
                } else {
                    whole.append(id)
                }
            }
            #expect(batch.listingIDs == whole.sorted() && batch.locationIDs == locations.sorted())
            #expect(batch.columnRecomputes == byRecompute.mapValues { $0.sorted() })
            #expect(batch.allListingIDs == listings.keys.sorted())
            #expect(batch.entryIDs == entries.map(\.id))
            #expect(batch.entryKeys == entries.map(\.key))
        }
    }

    /// Splitting a batch (random listings, sources and part counts) loses nothing and duplicates nothing: each
    /// listing and each of its entries land in the same single part, every list keeps its order, and a batch
    /// naming a location or too few listings stays whole.
    @Test func splitPartsPartitionTheBatchByListing() {
        var generator = SplitMix64(seed: 7)
        var splits = 0
        for round in 0..<300 {
            var batcher = ChangeBatcher(configuration: .init(window: .zero, maximumKeys: 10_000))
            let withLocation = round % 10 == 0
            var entries: [OutboxEntry] = []
            for id in 1...Int64(1 + generator.next() % 200) {
                let key = Int64(generator.next() % 300)
                let sources = ProjectionDefinition.Source.allCases.filter { $0 != .locations }
                entries.append(entry(id, sources[Int(generator.next() % UInt64(sources.count))], key: key))
            }
            if withLocation { entries.append(entry(Int64(entries.count + 1), .locations, key: 1)) }
            _ = batcher.add(entries.shuffled(using: &generator), now: 0)
            let batch = batcher.takeBatch()
            let parts = Int(1 + generator.next() % 4)
            let minimumKeys = Int(generator.next() % 20)
            let split = batch.split(into: parts, minimumKeys: minimumKeys)
            let keyCount = batch.allListingIDs.count
            guard parts > 1, !withLocation, keyCount >= max(2, minimumKeys) else {
                #expect(split == [batch])
                continue
            }
            splits += 1
            #expect(split.count <= parts && split.allSatisfy { !$0.isEmpty })
            // Each key in exactly one part, with all of its entries.
            var partOfKey: [Int64: Int] = [:]
            for (index, part) in split.enumerated() {
                #expect(part.locationIDs.isEmpty && part.entryIDs == part.entryIDs.sorted())
                #expect(part.listingIDs == part.listingIDs.sorted())
                #expect(part.columnRecomputes.values.allSatisfy { $0 == $0.sorted() && !$0.isEmpty })
                for key in part.allListingIDs { #expect(partOfKey.updateValue(index, forKey: key) == nil) }
                for key in part.entryKeys { #expect(partOfKey[key] == index) }
            }
            #expect(split.flatMap(\.allListingIDs).sorted() == batch.allListingIDs)
            #expect(split.flatMap(\.entryIDs).sorted() == batch.entryIDs)
            #expect(split.flatMap(\.listingIDs).sorted() == batch.listingIDs)
            for (recompute, ids) in batch.columnRecomputes {
                #expect(split.flatMap { $0.columnRecomputes[recompute] ?? [] }.sorted() == ids)
            }
        }
        #expect(splits > 100)
    }

    @Test func copyLinesAreUnescaped() throws {
        let line = Array("1\tdevelopment\tpublished\ta\\tb\\\\c\\nd\t5\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t42\n".utf8)
        let row = try line.withUnsafeBytes { try ProjectionRowDecoder.decode(copyLine: $0) }
        #expect(row.title == "a\tb\\c\nd")
        #expect(row.priceFrom == nil && row.city == "" && row.createdAt == 42 && row.locationID == 5)
        let bad = Array("x\tdevelopment\n".utf8)
        #expect(throws: ProjectorError.self) { try bad.withUnsafeBytes { try ProjectionRowDecoder.decode(copyLine: $0) } }
    }
}

