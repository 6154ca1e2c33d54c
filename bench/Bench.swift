import ArgumentParser
import DemoData
import Dispatch
import ExploreQuery
import Foundation
import Synchronization

/// `swift run -c release bench`: the explore cache against a reference scan and SQLite on one query mix.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks the in-memory explore cache against a reference scan and SQLite on an explore query mix.")

    @Option(help: "Number of listings generated (before the read model drops hidden ones).")
    var listings: Int?

    @Option(help: "Seed of the data set, the query mix and the update stream.")
    var seed: UInt64 = 1

    @Option(help: "Measured cache queries per query class (deep paging counts every page).")
    var queries: Int?

    @Option(help: "Queries per class also answered by the reference scan and SQLite, and compared.")
    var checkQueries: Int?

    @Option(help: "Pages followed by each deep-paging chain.")
    var deepPages: Int = 8

    @Option(help: "Update batches applied through ExploreIndex.apply.")
    var updateBatches: Int?

    @Option(help: "Changes per update batch.")
    var batchSize: Int = 1_000

    @Option(help: "Reader threads for the throughput run (default: all cores).")
    var threads: Int?

    @Flag(help: "A small run (100,000 listings, fewer queries) that finishes in under a minute.")
    var quick = false

    @Option(help: "Writes every figure as JSON to this path.")
    var json: String?

    @Flag(help: "Also serve the index over the binary protocol on 127.0.0.1 and drive it with the Swift client.")
    var server = false

    @Option(help: "Client connections for --server.")
    var connections: Int = 8

    @Option(help: "Requests in flight per connection for --server.")
    var pipelineDepth: Int = 16

    @Option(help: "Seconds each loaded --server phase runs.")
    var serverSeconds: Int = 5

    @Flag(help: "Benchmark the projector on PostgreSQL instead (build, bootstrap, changes/s, freshness, 1 % refresh).")
    var projector = false

    @OptionGroup var kafkaOptions: KafkaBenchOptions

    func validate() throws {
        if let listings, listings < 1 { throw ValidationError("--listings must be at least 1") }
        if let queries, queries < 1 { throw ValidationError("--queries must be at least 1") }
        if let checkQueries, checkQueries < 0 { throw ValidationError("--check-queries must not be negative") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let updateBatches, updateBatches < 0 { throw ValidationError("--update-batches must not be negative") }
        if deepPages < 1 { throw ValidationError("--deep-pages must be at least 1") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if connections < 1 { throw ValidationError("--connections must be at least 1") }
        if pipelineDepth < 1 { throw ValidationError("--pipeline-depth must be at least 1") }
        if serverSeconds < 1 { throw ValidationError("--server-seconds must be at least 1") }
        if projector && kafkaOptions.kafka { throw ValidationError("--projector and --kafka are separate runs") }
        if kafkaOptions.databaseUrl != nil && !projector && !kafkaOptions.kafka {
            throw ValidationError("--database-url is used with --projector or --kafka")
        }
    }

    // The async entry point runs on the main thread, so the synchronous SQLite phase never occupies the
    // cooperative pool; only the --server phase (NIO client and server) is asynchronous.
    func run() async throws {
        if projector {
            let bench = ProjectorBench(listings: listings ?? (quick ? 100_000 : 1_000_000), seed: seed, quick: quick,
                                       databaseURL: kafkaOptions.databaseUrl)
            let report = try bench.run()
            ProjectorBench.printTable(report)
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(report).write(to: URL(fileURLWithPath: json))
                print("figures written to \(json)")
            }
            if !report.verificationClean { throw ExitCode(1) }
            return
        }
        if kafkaOptions.kafka {
            var options = kafkaOptions
            options.listings = listings
            try options.run()
            return
        }
        let settings = BenchSettings(
            listings: listings ?? (quick ? 100_000 : 1_000_000), seed: seed,
            queriesPerClass: queries ?? (quick ? 400 : 2_000),
            checkQueriesPerClass: checkQueries ?? 60,
            deepPages: deepPages, updateBatches: updateBatches ?? (quick ? 50 : 200), batchSize: batchSize,
            threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let run = BenchRun(settings: settings)
        var report = try run.run()
        if server, let served = run.served {
            run.progress("server: \(connections) connections x depth \(pipelineDepth), \(serverSeconds) s per phase")
            report.addServer(try await ServerBenchmark.run(
                index: served.index, queries: served.queries, connections: connections,
                pipelineDepth: pipelineDepth, duration: .seconds(serverSeconds)))
        }
        report.printTable()
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
            print("figures written to \(json)")
        }
        if !report.mismatches.isEmpty {
            throw ExitCode(1)
        }
    }
}

struct BenchSettings: Codable {
    var listings: Int
    var seed: UInt64
    var queriesPerClass: Int
    var checkQueriesPerClass: Int
    var deepPages: Int
    var updateBatches: Int
    var batchSize: Int
    var threads: Int
}

/// One benchmark run, phase by phase; progress goes to stderr so stdout holds the table.
final class BenchRun {
    let settings: BenchSettings
    /// The served index and the mix's queries, kept after ``run()`` for the `--server` phase.
    private(set) var served: (index: ExploreIndex, queries: [SearchQuery])?

    init(settings: BenchSettings) {
        self.settings = settings
    }

    func progress(_ message: String) {
        FileHandle.standardError.write(Data("[bench] \(message)\n".utf8))
    }

    func seconds(since start: UInt64) -> Double { Double(monotonicNanoseconds() - start) / 1e9 }

    func run() throws -> BenchReport {
        let dataset = DemoDataset(listings: settings.listings, seed: settings.seed)

        // Memory: build a store straight from the generator so nothing else shares its strings, then read the
        // resident set against a baseline taken just before.
        progress("building a store from the generator for the memory measurement")
        ProcessMemory.releaseFreedMemory()
        let residentBefore = ProcessMemory.residentBytes() ?? 0
        let measuredStore = ExploreStore(bulk: (0..<dataset.listingCount).lazy.compactMap {
            dataset.exploreRow(for: dataset.listing(at: $0))
        })
        ProcessMemory.releaseFreedMemory()
        let residentAfter = ProcessMemory.residentBytes() ?? 0
        let index = ExploreIndex(store: measuredStore)
        let served = index.count
        let memory = MemoryFigures(
            residentBytesBefore: residentBefore, residentBytesAfter: residentAfter,
            residentBytesPerListing: Double(residentAfter - residentBefore) / Double(max(1, served)),
            indexMemoryBytes: index.memoryBytes,
            indexBytesPerListing: Double(index.memoryBytes) / Double(max(1, served)))

        progress("generating \(settings.listings) listings")
        var started = monotonicNanoseconds()
        let rows = dataset.exploreRows()
        let generationSeconds = seconds(since: started)
        guard !rows.isEmpty else {
            throw ValidationError("the data set has no listings visible in explore; use a larger --listings")
        }

        progress("bulk-loading \(rows.count) rows")
        let bulkLoadSeconds: Double = {
            let loadStarted = monotonicNanoseconds()
            let timedStore = ExploreStore(bulk: rows)
            let elapsed = seconds(since: loadStarted)
            // Only the load is timed; the store itself is dropped (the measured one above is served).
            withExtendedLifetime(timedStore) {}
            return elapsed
        }()

        var generator = QueryMixGenerator(rows: rows, seed: settings.seed)
        let mix = generator.mix(perClass: settings.queriesPerClass, deepPages: settings.deepPages)
        let ordered = Self.interleave(mix)
        self.served = (index, ordered.map(\.item.query))

        progress("warming up")
        for item in ordered.prefix(400) { _ = MixRunner.runCacheCountingPages(item.item, on: index) }

        progress("cache, single thread: \(ordered.count) mix items")
        var outcomes = [QueryClass: [ItemOutcome]]()
        var recorders = [QueryClass: LatencyRecorder]()
        var overall = LatencyRecorder()
        var singlePages = 0
        started = monotonicNanoseconds()
        for entry in ordered {
            let outcome = MixRunner.runCache(
                entry.item, on: index, keepAnswers: entry.position < settings.checkQueriesPerClass)
            outcomes[entry.item.queryClass, default: []].append(outcome)
            for nanoseconds in outcome.nanoseconds {
                recorders[entry.item.queryClass, default: LatencyRecorder()].record(nanoseconds: nanoseconds)
                overall.record(nanoseconds: nanoseconds)
            }
            singlePages += outcome.nanoseconds.count
        }
        let singleSeconds = seconds(since: started)

        progress("cache, \(settings.threads) threads")
        let pagesPerThread = Mutex([Int](repeating: 0, count: settings.threads))
        let threadCount = settings.threads
        let items = ordered.map(\.item)
        started = monotonicNanoseconds()
        DispatchQueue.concurrentPerform(iterations: threadCount) { thread in
            var pages = 0
            // Each thread runs the whole mix from its own starting point so threads do not march in step.
            let shift = items.count * thread / threadCount
            for offset in 0..<items.count {
                pages += MixRunner.runCacheCountingPages(items[(offset + shift) % items.count], on: index)
            }
            pagesPerThread.withLock { $0[thread] = pages }
        }
        let parallelSeconds = seconds(since: started)
        let parallelPages = pagesPerThread.withLock { $0.reduce(0, +) }

        // The comparison engines answer the first `checkQueriesPerClass` items of every class.
        progress("reference scan")
        started = monotonicNanoseconds()
        var reference = ReferenceExplore(rows: rows)
        let referenceBuildSeconds = seconds(since: started)
        var referenceOutcomes = [QueryClass: [ItemOutcome]]()
        for queryClass in QueryClass.allCases {
            referenceOutcomes[queryClass] = (mix[queryClass] ?? []).prefix(settings.checkQueriesPerClass).map {
                MixRunner.runReference($0, on: reference)
            }
        }

        progress("SQLite: loading")
        started = monotonicNanoseconds()
        let sqlite = try SQLiteExplore()
        try sqlite.load(rows)
        let sqliteLoadSeconds = seconds(since: started)
        progress("SQLite: querying")
        var sqliteOutcomes = [QueryClass: [ItemOutcome]]()
        for queryClass in QueryClass.allCases {
            sqliteOutcomes[queryClass] = (mix[queryClass] ?? []).prefix(settings.checkQueriesPerClass).map {
                MixRunner.runSQLite($0, on: sqlite)
            }
        }

        progress("comparing answers")
        var mismatches: [String] = []
        var comparisons = [QueryClass: ComparisonFigures]()
        for queryClass in QueryClass.allCases {
            let classItems = mix[queryClass] ?? []
            let cache = outcomes[queryClass] ?? []
            let referenceRuns = referenceOutcomes[queryClass] ?? []
            let sqliteRuns = sqliteOutcomes[queryClass] ?? []
            var figures = ComparisonFigures()
            for position in referenceRuns.indices {
                let query = classItems[position].query
                mismatches += Self.compare(cache[position], referenceRuns[position], names: ("cache", "reference"),
                                           queryClass: queryClass, query: query)
                mismatches += Self.compare(sqliteRuns[position], referenceRuns[position], names: ("sqlite", "reference"),
                                           queryClass: queryClass, query: query)
                figures.queries += referenceRuns[position].nanoseconds.count
                figures.cacheNanoseconds += cache[position].totalNanoseconds
                figures.referenceNanoseconds += referenceRuns[position].totalNanoseconds
                figures.sqliteNanoseconds += sqliteRuns[position].totalNanoseconds
            }
            comparisons[queryClass] = figures
        }

        progress("updates: \(settings.updateBatches) batches of \(settings.batchSize)")
        var updates = UpdateStreamGenerator(rows: rows, seed: settings.seed)
        let batches = updates.batches(count: settings.updateBatches, size: settings.batchSize)
        var applyLatency = LatencyRecorder()
        started = monotonicNanoseconds()
        for batch in batches {
            let batchStarted = monotonicNanoseconds()
            index.apply(batch)
            applyLatency.record(nanoseconds: monotonicNanoseconds() - batchStarted)
        }
        let applySeconds = seconds(since: started)
        let changeCount = settings.updateBatches * settings.batchSize
        for batch in batches { reference.apply(batch) }

        // Taken now: the paced stream below comes from the same generator and adds to its counts.
        let counts = (prices: updates.priceChanges, deletes: updates.deletes, reshown: updates.reshown,
                      inserts: updates.inserts)
        // The projector's sustained target: what its batches' write lock costs the searches meanwhile.
        let pacedRate = 20_000.0
        progress("searches during updates: \(settings.updateBatches) more batches at \(Int(pacedRate)) changes/s")
        let pacedBatches = updates.batches(count: settings.updateBatches, size: settings.batchSize)
        let during = Self.searchesDuring(pacedBatches, changesPerSecond: pacedRate, on: index, running: items)
        for batch in pacedBatches { reference.apply(batch) }
        var afterUpdates = LatencyRecorder()
        for entry in ordered {
            let outcome = MixRunner.runCache(entry.item, on: index, keepAnswers: false)
            for nanoseconds in outcome.nanoseconds { afterUpdates.record(nanoseconds: nanoseconds) }
        }
        let updateFigures = UpdateFigures(
            batches: settings.updateBatches, batchSize: settings.batchSize, changes: changeCount,
            priceChanges: counts.prices, deletes: counts.deletes, reshown: counts.reshown, inserts: counts.inserts,
            seconds: applySeconds,
            changesPerSecond: Double(changeCount) / max(applySeconds, 1e-9),
            batchApplyLatency: applyLatency.summary, pacedChangesPerSecond: pacedRate,
            searchesDuringPacedUpdates: during, searchesAfterUpdates: afterUpdates.summary,
            relayouts: index.relayoutsCompleted)

        progress("re-checking the cache against the reference after the updates")
        if index.count != reference.count {
            mismatches.append("after updates: cache serves \(index.count) listings, reference \(reference.count)")
        }
        var postUpdateChecked = 0
        for queryClass in QueryClass.allCases {
            for item in (mix[queryClass] ?? []).prefix(min(settings.checkQueriesPerClass, 100)) {
                let cache = MixRunner.runCache(item, on: index, keepAnswers: true)
                let referenceRun = MixRunner.runReference(item, on: reference)
                mismatches += Self.compare(cache, referenceRun, names: ("cache", "reference"),
                                           queryClass: queryClass, query: item.query, phase: "after updates")
                postUpdateChecked += 1
            }
        }

        var classFigures: [String: ClassFigures] = [:]
        for queryClass in QueryClass.allCases {
            let comparison = comparisons[queryClass] ?? ComparisonFigures()
            classFigures[queryClass.rawValue] = ClassFigures(
                latency: (recorders[queryClass] ?? LatencyRecorder()).summary, comparison: comparison)
        }
        let totalComparison = comparisons.values.reduce(into: ComparisonFigures()) { $0.add($1) }
        return BenchReport(
            settings: settings, servedListings: served, generationSeconds: generationSeconds,
            bulkLoadSeconds: bulkLoadSeconds, bulkLoadRowsPerSecond: Double(rows.count) / max(bulkLoadSeconds, 1e-9),
            memory: memory, classes: classFigures, overall: overall.summary,
            singleThread: ThroughputFigures(threads: 1, queries: singlePages, seconds: singleSeconds),
            allThreads: ThroughputFigures(threads: settings.threads, queries: parallelPages, seconds: parallelSeconds),
            comparison: totalComparison, referenceBuildSeconds: referenceBuildSeconds,
            sqliteLoadSeconds: sqliteLoadSeconds, updates: updateFigures,
            postUpdateQueriesChecked: postUpdateChecked, mismatches: mismatches)
    }

    /// Applies `batches` at `changesPerSecond` on one thread while another runs `items` round and round; returns
    /// the latency of every search that thread ran until the last batch was applied.
    static func searchesDuring(_ batches: [ListingChangeBatch], changesPerSecond: Double, on index: ExploreIndex,
                               running items: [MixItem]) -> LatencySummary {
        let done = Mutex(false)
        let recorder = Mutex(LatencyRecorder())
        DispatchQueue.concurrentPerform(iterations: 2) { role in
            if role == 0 {
                let start = monotonicNanoseconds()
                var applied = 0
                for batch in batches {
                    let due = start + UInt64(Double(applied) / changesPerSecond * 1e9)
                    let now = monotonicNanoseconds()
                    if due > now { usleep(UInt32(min((due - now) / 1_000, 1_000_000))) }
                    index.apply(batch)
                    applied += batch.changes.count
                }
                done.withLock { $0 = true }
            } else {
                var local = LatencyRecorder()
                var position = 0
                while !done.withLock({ $0 }) {
                    let outcome = MixRunner.runCache(items[position % items.count], on: index, keepAnswers: false)
                    for nanoseconds in outcome.nanoseconds { local.record(nanoseconds: nanoseconds) }
                    position += 1
                }
                recorder.withLock { $0.add(local) }
            }
        }
        return recorder.withLock { $0.summary }
    }

    /// Round-robin over the classes, so the measured stream mixes request kinds as live traffic does.
    static func interleave(_ mix: [QueryClass: [MixItem]]) -> [(item: MixItem, position: Int)] {
        var ordered: [(item: MixItem, position: Int)] = []
        let longest = mix.values.map(\.count).max() ?? 0
        for position in 0..<longest {
            for queryClass in QueryClass.allCases {
                if let items = mix[queryClass], position < items.count {
                    ordered.append((items[position], position))
                }
            }
        }
        return ordered
    }

    static func droppingEmptyFollowUps(_ pages: [Answer]) -> [Answer] {
        var pages = pages
        while pages.count > 1, pages[pages.count - 1].ids.isEmpty { pages.removeLast() }
        return pages
    }

    static func compare(
        _ candidate: ItemOutcome, _ reference: ItemOutcome, names: (String, String), queryClass: QueryClass,
        query: SearchQuery, phase: String = "initial data"
    ) -> [String] {
        let context = "[\(phase)] \(queryClass.rawValue) query {\(query.benchDescription)}"
        if let failure = candidate.failure { return ["\(context): \(names.0) failed: \(failure)"] }
        if let failure = reference.failure { return ["\(context): \(names.1) failed: \(failure)"] }
        // Whether a full last page carries a cursor to an empty page is the engine's choice; an empty
        // follow-up page says nothing, so it is not compared.
        let candidatePages = Self.droppingEmptyFollowUps(candidate.pages)
        let referencePages = Self.droppingEmptyFollowUps(reference.pages)
        if candidatePages.count != referencePages.count {
            return ["\(context): \(names.0) returned \(candidatePages.count) pages, \(names.1) \(referencePages.count)"]
        }
        for (page, (lhs, rhs)) in zip(candidatePages, referencePages).enumerated() {
            if let difference = lhs.difference(from: rhs, names: names) {
                return ["\(context) page \(page + 1): \(difference)"]
            }
        }
        return []
    }
}
