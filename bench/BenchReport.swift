import ExploreQuery

struct MemoryFigures: Codable {
    var residentBytesBefore: Int
    var residentBytesAfter: Int
    /// Resident-set growth from building the served store, divided by listings served.
    var residentBytesPerListing: Double
    /// `ExploreIndex.memoryBytes`: what the store counts in its own buffers.
    var indexMemoryBytes: Int
    var indexBytesPerListing: Double
}

/// The same queries timed on the three engines (single thread each).
struct ComparisonFigures: Codable {
    var queries = 0
    var cacheNanoseconds: UInt64 = 0
    var referenceNanoseconds: UInt64 = 0
    var sqliteNanoseconds: UInt64 = 0

    var referenceSpeedup: Double { Double(referenceNanoseconds) / Double(max(cacheNanoseconds, 1)) }
    var sqliteSpeedup: Double { Double(sqliteNanoseconds) / Double(max(cacheNanoseconds, 1)) }

    func queriesPerSecond(_ nanoseconds: UInt64) -> Double {
        Double(queries) / max(Double(nanoseconds) / 1e9, 1e-12)
    }

    mutating func add(_ other: ComparisonFigures) {
        queries += other.queries
        cacheNanoseconds += other.cacheNanoseconds
        referenceNanoseconds += other.referenceNanoseconds
        sqliteNanoseconds += other.sqliteNanoseconds
    }

    enum CodingKeys: String, CodingKey {
        case queries, cacheNanoseconds, referenceNanoseconds, sqliteNanoseconds
        case referenceSpeedup, sqliteSpeedup, cacheQueriesPerSecond, referenceQueriesPerSecond, sqliteQueriesPerSecond
    }

    init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        queries = try container.decode(Int.self, forKey: .queries)
        cacheNanoseconds = try container.decode(UInt64.self, forKey: .cacheNanoseconds)
        referenceNanoseconds = try container.decode(UInt64.self, forKey: .referenceNanoseconds)
        sqliteNanoseconds = try container.decode(UInt64.self, forKey: .sqliteNanoseconds)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(queries, forKey: .queries)
        try container.encode(cacheNanoseconds, forKey: .cacheNanoseconds)
        try container.encode(referenceNanoseconds, forKey: .referenceNanoseconds)
        try container.encode(sqliteNanoseconds, forKey: .sqliteNanoseconds)
        try container.encode(referenceSpeedup, forKey: .referenceSpeedup)
        try container.encode(sqliteSpeedup, forKey: .sqliteSpeedup)
        try container.encode(queriesPerSecond(cacheNanoseconds), forKey: .cacheQueriesPerSecond)
        try container.encode(queriesPerSecond(referenceNanoseconds), forKey: .referenceQueriesPerSecond)
        try container.encode(queriesPerSecond(sqliteNanoseconds), forKey: .sqliteQueriesPerSecond)
    }
}

struct ClassFigures: Codable {
    var latency: LatencySummary
    var comparison: ComparisonFigures
}

struct ThroughputFigures: Codable {
    var threads: Int
    var queries: Int
    var seconds: Double
    var queriesPerSecond: Double

    init(threads: Int, queries: Int, seconds: Double) {
        self.threads = threads
        self.queries = queries
        self.seconds = seconds
        queriesPerSecond = Double(queries) / max(seconds, 1e-12)
    }
}

struct UpdateFigures: Codable {
    var batches: Int
    var batchSize: Int
    var changes: Int
    var priceChanges: Int
    var deletes: Int
    var reshown: Int
    var inserts: Int
    var seconds: Double
    var changesPerSecond: Double
    var batchApplyLatency: LatencySummary
    /// A second stream of as many batches, applied at `pacedChangesPerSecond` while one thread runs the mix:
    /// the searches' latency meanwhile, waits for the batches' write lock included.
    var pacedChangesPerSecond: Double
    var searchesDuringPacedUpdates: LatencySummary
    /// The single-thread mix again once every change is applied: a live cache spends its life in this state,
    /// and rows added, removed and moved since the load must not slow its searches down.
    var searchesAfterUpdates: LatencySummary
    /// Times the index laid its store out again in the background during both streams (see `ExploreIndex.apply`).
    var relayouts: Int
}

/// One bar from the issue, judged on this run's figures.
struct BarResult: Codable {
    var name: String
    var target: String
    var measured: String
    var passed: Bool
}

struct BenchReport: Codable {
    var settings: BenchSettings
    var servedListings: Int
    var generationSeconds: Double
    var bulkLoadSeconds: Double
    var bulkLoadRowsPerSecond: Double
    var memory: MemoryFigures
    var classes: [String: ClassFigures]
    var overall: LatencySummary
    var singleThread: ThroughputFigures
    var allThreads: ThroughputFigures
    var comparison: ComparisonFigures
    var referenceBuildSeconds: Double
    var sqliteLoadSeconds: Double
    var updates: UpdateFigures
    var postUpdateQueriesChecked: Int
    var mismatches: [String]
    var bars: [BarResult] = []
    /// Figures of the `--server` phase, when it ran.
    var server: ServerBenchmarkReport?

    init(
        settings: BenchSettings, servedListings: Int, generationSeconds: Double, bulkLoadSeconds: Double,
        bulkLoadRowsPerSecond: Double, memory: MemoryFigures, classes: [String: ClassFigures],
        overall: LatencySummary, singleThread: ThroughputFigures, allThreads: ThroughputFigures,
        comparison: ComparisonFigures, referenceBuildSeconds: Double, sqliteLoadSeconds: Double,
        updates: UpdateFigures, postUpdateQueriesChecked: Int, mismatches: [String]
    ) {
        self.settings = settings
        self.servedListings = servedListings
        self.generationSeconds = generationSeconds
        self.bulkLoadSeconds = bulkLoadSeconds
        self.bulkLoadRowsPerSecond = bulkLoadRowsPerSecond
        self.memory = memory
        self.classes = classes
        self.overall = overall
        self.singleThread = singleThread
        self.allThreads = allThreads
        self.comparison = comparison
        self.referenceBuildSeconds = referenceBuildSeconds
        self.sqliteLoadSeconds = sqliteLoadSeconds
        self.updates = updates
        self.postUpdateQueriesChecked = postUpdateQueriesChecked
        self.mismatches = mismatches
        bars = [
            BarResult(name: "explore-mix p99, single thread", target: "<= 200 us",
                      measured: Self.format(overall.p99Microseconds, digits: 1) + " us",
                      passed: overall.p99Microseconds <= 200),
            BarResult(name: "throughput vs reference scan", target: ">= 30x",
                      measured: Self.format(comparison.referenceSpeedup, digits: 1) + "x",
                      passed: comparison.referenceSpeedup >= 30),
            BarResult(name: "throughput vs SQLite", target: ">= 20x",
                      measured: Self.format(comparison.sqliteSpeedup, digits: 1) + "x",
                      passed: comparison.sqliteSpeedup >= 20),
            BarResult(name: "changes applied per second", target: ">= 500,000/s",
                      measured: Self.grouped(updates.changesPerSecond) + "/s",
                      passed: updates.changesPerSecond >= 500_000),
            BarResult(name: "memory per listing (resident set)", target: "<= 400 B",
                      measured: Self.format(memory.residentBytesPerListing, digits: 0) + " B",
                      passed: memory.residentBytesPerListing <= 400),
            BarResult(name: "identical answers (cache, reference, SQLite)", target: "0 mismatches",
                      measured: "\(mismatches.count) mismatches", passed: mismatches.isEmpty),
        ]
        if settings.listings != 1_000_000 {
            // The bars are defined at 1,000,000 listings; say so rather than let a small run look conclusive.
            bars = bars.map { bar in
                var bar = bar
                bar.name += " (bars are set for 1,000,000 listings)"
                return bar
            }
        }
    }

    /// Records the `--server` phase and its bars (set for 1,000,000 listings on the 2-core reference machine).
    mutating func addServer(_ report: ServerBenchmarkReport) {
        server = report
        let suffix = settings.listings == 1_000_000 ? "" : " (bars are set for 1,000,000 listings)"
        bars += [
            BarResult(name: "server: explore-mix queries/s over loopback" + suffix, target: ">= 50,000/s",
                      measured: Self.grouped(report.maximumThroughput) + "/s",
                      passed: report.maximumThroughput >= 50_000),
            BarResult(name: "server: p99 at half the maximum load" + suffix, target: "<= 1,000 us",
                      measured: "\(report.halfLoadP99Micros) us", passed: report.halfLoadP99Micros <= 1_000),
            // Paired per query (round trip minus the same query in-process just before): the difference of two
            // separate medians is dominated by the machine's load, not by the protocol.
            BarResult(name: "server: protocol overhead per query (round trip - same query in-process, p50)" + suffix,
                      target: "<= 20 us", measured: Self.format(report.pairedOverheadMicros, digits: 1) + " us",
                      passed: report.pairedOverheadMicros <= 20),
        ]
    }

    static func format(_ value: Double, digits: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        if digits == 0 { return grouped(rounded) }
        let whole = Int(rounded.rounded(.towardZero))
        var fraction = String(Int(((abs(rounded) - Double(abs(whole))) * scale).rounded()))
        while fraction.count < digits { fraction = "0" + fraction }
        return (rounded < 0 && whole == 0 ? "-" : "") + grouped(Double(whole)) + "." + fraction
    }

    static func grouped(_ value: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        let integer = Int(value.rounded())
        let digits = String(abs(integer))
        var result = ""
        for (offset, character) in digits.enumerated() {
            if offset > 0 && (digits.count - offset) % 3 == 0 { result.append(",") }
            result.append(character)
        }
        return (integer < 0 ? "-" : "") + result
    }

    static func pad(_ text: String, _ width: Int, right: Bool = true) -> String {
        let padding = String(repeating: " ", count: max(0, width - text.count))
        return right ? padding + text : text + padding
    }

    func printTable() {
        let us = { (value: Double) in Self.format(value, digits: 1) }
        print("")
        print("explore cache benchmark: \(Self.grouped(Double(settings.listings))) listings generated, "
              + "\(Self.grouped(Double(servedListings))) served, seed \(settings.seed)")
        print("  data generation      \(Self.format(generationSeconds, digits: 2)) s")
        print("  bulk load            \(Self.format(bulkLoadSeconds, digits: 2)) s "
              + "(\(Self.grouped(bulkLoadRowsPerSecond)) rows/s)")
        print("  memory (resident)    \(Self.format(memory.residentBytesPerListing, digits: 1)) B/listing "
              + "(\(Self.grouped(Double(memory.residentBytesAfter - memory.residentBytesBefore) / 1_048_576)) MiB)")
        print("  memory (memoryBytes) \(Self.format(memory.indexBytesPerListing, digits: 1)) B/listing "
              + "(\(Self.grouped(Double(memory.indexMemoryBytes) / 1_048_576)) MiB)")
        print("")
        print("latency per query class, cache, single thread (microseconds)")
        print(Self.pad("class", 14, right: false) + Self.pad("queries", 9) + Self.pad("p50", 10) + Self.pad("p99", 10)
              + Self.pad("p999", 10) + Self.pad("max", 10))
        func latencyLine(_ name: String, _ latency: LatencySummary) {
            print(Self.pad(name, 14, right: false) + Self.pad(Self.grouped(Double(latency.count)), 9)
                  + Self.pad(us(latency.p50Microseconds), 10) + Self.pad(us(latency.p99Microseconds), 10)
                  + Self.pad(us(latency.p999Microseconds), 10) + Self.pad(us(latency.maxMicroseconds), 10))
        }
        for queryClass in QueryClass.allCases {
            if let figures = classes[queryClass.rawValue] { latencyLine(queryClass.rawValue, figures.latency) }
        }
        latencyLine("overall", overall)
        print("")
        print("cache throughput")
        print("  1 thread             \(Self.grouped(singleThread.queriesPerSecond)) queries/s")
        print("  \(allThreads.threads) threads            \(Self.grouped(allThreads.queriesPerSecond)) queries/s")
        print("")
        print("same queries on all three engines, single thread each (reference and SQLite answer the first "
              + "\(settings.checkQueriesPerClass) items per class; speed-up = engine time / cache time)")
        print(Self.pad("class", 14, right: false) + Self.pad("queries", 9) + Self.pad("cache q/s", 13)
              + Self.pad("ref q/s", 11) + Self.pad("sqlite q/s", 12) + Self.pad("vs ref", 10) + Self.pad("vs sqlite", 11))
        func comparisonLine(_ name: String, _ figures: ComparisonFigures) {
            print(Self.pad(name, 14, right: false) + Self.pad(Self.grouped(Double(figures.queries)), 9)
                  + Self.pad(Self.grouped(figures.queriesPerSecond(figures.cacheNanoseconds)), 13)
                  + Self.pad(Self.grouped(figures.queriesPerSecond(figures.referenceNanoseconds)), 11)
                  + Self.pad(Self.grouped(figures.queriesPerSecond(figures.sqliteNanoseconds)), 12)
                  + Self.pad(Self.format(figures.referenceSpeedup, digits: 1) + "x", 10)
                  + Self.pad(Self.format(figures.sqliteSpeedup, digits: 1) + "x", 11))
        }
        for queryClass in QueryClass.allCases {
            if let figures = classes[queryClass.rawValue] { comparisonLine(queryClass.rawValue, figures.comparison) }
        }
        comparisonLine("overall", comparison)
        print("  reference build \(Self.format(referenceBuildSeconds, digits: 2)) s, "
              + "SQLite load + indexes \(Self.format(sqliteLoadSeconds, digits: 2)) s")
        print("")
        print("updates: \(Self.grouped(Double(updates.changes))) changes in \(updates.batches) batches of "
              + "\(updates.batchSize) (\(updates.priceChanges) price changes, \(updates.deletes) hidden/deleted, "
              + "\(updates.reshown) shown again, \(updates.inserts) new)")
        print("  applied              \(Self.grouped(updates.changesPerSecond)) changes/s; batch p50 "
              + "\(us(updates.batchApplyLatency.p50Microseconds)) us, p99 \(us(updates.batchApplyLatency.p99Microseconds)) us, "
              + "max \(us(updates.batchApplyLatency.maxMicroseconds)) us")
        let during = updates.searchesDuringPacedUpdates
        print("  searches meanwhile   p50 \(us(during.p50Microseconds)) us, p99 \(us(during.p99Microseconds)) us, "
              + "max \(us(during.maxMicroseconds)) us (one thread running the mix while batches are applied at "
              + "\(Self.grouped(updates.pacedChangesPerSecond)) changes/s)")
        let after = updates.searchesAfterUpdates
        print("  searches afterwards  p50 \(us(after.p50Microseconds)) us, p99 \(us(after.p99Microseconds)) us, "
              + "max \(us(after.maxMicroseconds)) us (the single-thread mix again, after all "
              + "\(Self.grouped(Double(2 * updates.changes))) changes; the store was laid out again "
              + "\(updates.relayouts) time\(updates.relayouts == 1 ? "" : "s") meanwhile)")
        print("  re-checked after updates: \(postUpdateQueriesChecked) mix items, cache vs reference")
        print("")
        if let server {
            print(server.description)
            print("")
        }
        print("bars")
        for bar in bars {
            print("  " + Self.pad(bar.passed ? "PASS" : "FAIL", 5, right: false) + Self.pad(bar.name, 70, right: false)
                  + Self.pad(bar.measured, 16) + "   target " + bar.target)
        }
        if !mismatches.isEmpty {
            print("")
            print("MISMATCHES (\(mismatches.count)); first 20:")
            for mismatch in mismatches.prefix(20) { print("  " + mismatch) }
        }
    }
}
