import DemoData
import Dispatch
import ExploreQuery
import Foundation
import Migrations
import Postgres
import Projector
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `bench --projector`: the projector on a real PostgreSQL at N listings (default 1,000,000).
///
/// Migrates and seeds a fresh database (on `--database-url`'s server, or on a throwaway cluster started for the
/// run), then measures: the full projection build from the defining query, a full `REFRESH MATERIALIZED VIEW
/// CONCURRENTLY` of the same query, the cache bootstrap, changes/s applied while writers run, commit-to-visible
/// freshness at a paced 1,000 and 5,000 changes/s, and a 1 % change set applied incrementally versus `REFRESH …
/// CONCURRENTLY`. Prints one table with the targets and PASS/FAIL.
struct ProjectorBench {
    struct Settings: Codable {
        var listings: Int
        var seed: UInt64
        var quick: Bool
        /// Seconds the sustained-throughput writers run.
        var sustainedSeconds: Double
        /// Writer connections of the sustained phase.
        var writers: Int
        /// Rows per writer transaction in the sustained phase.
        var rowsPerTransaction: Int
        /// Changes/s the sustained-phase writers offer together (paced; they go no faster).
        var sustainedOfferedRate: Double
        /// Seconds of each paced freshness run.
        var freshnessSeconds: Double
        /// 1 % change sets applied, each against a REFRESH of its own; the bar takes the median ratio.
        var onePercentRounds: Int
    }

    /// One paced freshness run.
    struct Freshness: Codable {
        var targetChangesPerSecond: Double
        var achievedChangesPerSecond: Double
        var samples: Int
        var p50Milliseconds: Double
        var p99Milliseconds: Double
        var maxMilliseconds: Double
    }

    struct Report: Codable {
        var settings: Settings
        var server: String
        var servedListings: Int
        var seedSeconds: Double
        var buildSeconds: Double
        var fullRefreshConcurrentlySeconds: Double
        var bootstrapSeconds: Double
        var bootstrapCopySeconds: Double
        var bootstrapStoreSeconds: Double
        var writtenChangesPerSecond: Double
        var appliedChangesPerSecondWhileWriting: Double
        var drainSecondsAfterWriters: Double
        var freshness: [Freshness]
        var onePercent: [OnePercentRound]
        /// The median over the rounds of REFRESH's time over the incremental apply's, cache included.
        var incrementalSpeedup: Double
        /// The same for the incremental apply until committed to the projection table.
        var committedSpeedup: Double
        var verifiedSample: Int
        var verificationClean: Bool
        /// The machine's 1-minute load average at the start and the end (other work skews every figure).
        var loadAverage: [Double]
        var bars: [Bar]
    }

    /// One 1 % change set: its incremental apply from COMMIT, then REFRESH CONCURRENTLY.
    struct OnePercentRound: Codable {
        var listings: Int
        var entries: Int
        /// Until the projector committed the change set to the projection table (the part of the incremental
        /// apply REFRESH does too), cache not included.
        var committedSeconds: Double
        /// Until the cache has it too.
        var incrementalSeconds: Double
        /// The incremental apply's batches (the parts of a split batch count apart and overlap), and their time in
        /// database transactions and in the cache (the rest is waking up and reading the outbox).
        var batches: Int
        var databaseSeconds: Double
        var cacheSeconds: Double
        var refreshSeconds: Double
        /// CPU time from COMMIT until the cache has the change set: the projector's PostgreSQL backends (`nil` when
        /// the server is not on this machine) and this process (the projector, and the bench polling it).
        var incrementalDatabaseCPUSeconds: Double?
        var incrementalProcessCPUSeconds: Double
        /// CPU time of the backend running REFRESH (`nil` when the server is not on this machine).
        var refreshCPUSeconds: Double?

        /// Both sides of the incremental apply's CPU time; `nil` without the database's.
        var incrementalCPUSeconds: Double? { incrementalDatabaseCPUSeconds.map { $0 + incrementalProcessCPUSeconds } }
        var incrementalSpeedup: Double { refreshSeconds / max(incrementalSeconds, 1e-9) }
        var committedSpeedup: Double { refreshSeconds / max(committedSeconds, 1e-9) }
    }

    struct Bar: Codable {
        var name: String
        var value: String
        var target: String
        var pass: Bool
    }

    let settings: Settings
    let databaseURL: String?

    init(listings: Int, seed: UInt64, quick: Bool, databaseURL: String?) {
        settings = Settings(
            listings: listings, seed: seed, quick: quick, sustainedSeconds: quick ? 4 : 10, writers: 4,
            rowsPerTransaction: 200, sustainedOfferedRate: 25_000, freshnessSeconds: quick ? 3 : 6,
            onePercentRounds: 3)
        self.databaseURL = databaseURL
    }

    func progress(_ message: String) {
        FileHandle.standardError.write(Data("[bench --projector] \(message)\n".utf8))
    }

    static func seconds(since start: UInt64) -> Double { Double(monotonicNanoseconds() - start) / 1e9 }

    /// Runs every phase; the database (and a throwaway cluster) is removed afterwards.
    func run() throws -> Report {
        var cluster: BenchCluster?
        let server: PostgresConfiguration
        if let databaseURL {
            server = try PostgresConfiguration(url: databaseURL)
        } else {
            progress("starting a throwaway PostgreSQL cluster")
            let started = try BenchCluster.start()
            cluster = started
            server = started.configuration
        }
        defer { cluster?.stop() }
        let name = "explore_bench_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try PostgresConnection.connect(server)
        try admin.executeScript("CREATE DATABASE \(name) TEMPLATE template0 ENCODING 'UTF8'")
        defer {
            try? admin.executeScript("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            admin.close()
        }
        let configuration = server.with(database: name)
        return try measure(configuration, serverDescription: "\(server.host):\(server.port)"
            + (cluster == nil ? "" : " (throwaway cluster: fsync=off, synchronous_commit=off, shared_buffers=1GB)"))
    }

    // MARK: Phases

    private func measure(_ configuration: PostgresConfiguration, serverDescription: String) throws -> Report {
        let loadAtStart = Self.loadAverage()
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        let files = try MigrationFile.load(directory: BenchCluster.repositoryRoot + "/sql")
        _ = try MigrationRunner(connection: connection, files: files, log: { _ in }).up()

        progress("seeding \(settings.listings) listings")
        var started = monotonicNanoseconds()
        try DemoSeeder.seed(DemoDataset(listings: settings.listings, seed: settings.seed), into: connection,
                            progress: { progress("seed: \($0)") })
        let seedSeconds = Self.seconds(since: started)
        // The seed's outbox entries are covered by the build; dropping them keeps the build's figure to the build.
        try connection.executeScript("TRUNCATE explore.change_outbox")
        try connection.executeScript("VACUUM ANALYZE")

        progress("building the projection from the defining query")
        started = monotonicNanoseconds()
        try ProjectionStore.buildIfNeeded(on: connection)
        let buildSeconds = Self.seconds(since: started)

        progress("REFRESH MATERIALIZED VIEW CONCURRENTLY (full)")
        started = monotonicNanoseconds()
        try connection.executeScript("REFRESH MATERIALIZED VIEW CONCURRENTLY \(ProjectionDefinition.materializedView)")
        let fullRefreshSeconds = Self.seconds(since: started)
        try connection.executeScript("VACUUM ANALYZE explore.listings_projection")
        try connection.executeScript("VACUUM ANALYZE \(ProjectionDefinition.materializedView)")

        progress("cache bootstrap")
        started = monotonicNanoseconds()
        let (store, _) = try ProjectionStore.loadCache(on: connection)
        let bootstrapSeconds = Self.seconds(since: started)
        let servedListings = store.count
        withExtendedLifetime(store) {}
        started = monotonicNanoseconds()
        let rows = try ProjectionStore.copyProjectionRows(on: connection)
        let copySeconds = Self.seconds(since: started)
        started = monotonicNanoseconds()
        let rebuilt = ExploreStore(bulk: rows)
        let storeSeconds = Self.seconds(since: started)
        withExtendedLifetime((rows, rebuilt)) {}

        let existingIDs = try connection.query("""
            SELECT id FROM explore.listings_projection WHERE listing_type = 'existing' ORDER BY id
            """).map { try $0.decode(0, as: Int64.self) }
        guard existingIDs.count >= settings.writers * settings.rowsPerTransaction else {
            throw ProjectorBenchError("too few visible existing listings for the writers; use a larger --listings")
        }

        // The projector, as `serve` runs it, with a hook recording when marked rows reach the cache.
        let marks = FreshnessMarks()
        let driver = ProjectorDriver(
            configuration: .init(postgres: configuration, afterApply: { batch in marks.observe(batch) }),
            index: ExploreIndex())
        driver.start()
        defer { driver.stop() }
        guard poll(attempts: 12_000, everyMicroseconds: 10_000, { driver.status.isBootstrapped }) else {
            throw ProjectorBenchError("the projector did not bootstrap: \(driver.status.lastError ?? "unknown")")
        }

        // Freshness and the 1 % change set first, on a database in steady state; the sustained phase last, since
        // it leaves a backlog and dead rows behind.
        var freshness: [Freshness] = []
        for rate in [1_000.0, 5_000.0] {
            freshness.append(try freshnessPhase(configuration, rate: rate, marks: marks, ids: existingIDs))
        }
        // Rounds: one change set's time swings by a fifth from run to run on a shared two-core machine.
        let onePercent = try (0..<settings.onePercentRounds).map {
            try onePercentPhase(connection, driver: driver, round: $0)
        }
        let sustained = try sustainedPhase(configuration, connection: connection, driver: driver, ids: existingIDs)
        driver.stop()

        progress("verifying a sample of the projection")
        let sample = settings.quick ? 2_000 : 10_000
        let verification = try ProjectionVerifier.verifyTable(on: connection, sample: sample)

        var report = Report(
            settings: settings, server: serverDescription, servedListings: servedListings, seedSeconds: seedSeconds,
            buildSeconds: buildSeconds, fullRefreshConcurrentlySeconds: fullRefreshSeconds,
            bootstrapSeconds: bootstrapSeconds, bootstrapCopySeconds: copySeconds, bootstrapStoreSeconds: storeSeconds,
            writtenChangesPerSecond: sustained.written, appliedChangesPerSecondWhileWriting: sustained.applied,
            drainSecondsAfterWriters: sustained.drainSeconds, freshness: freshness,
            onePercent: onePercent, incrementalSpeedup: Self.median(onePercent.map(\.incrementalSpeedup)),
            committedSpeedup: Self.median(onePercent.map(\.committedSpeedup)),
            verifiedSample: verification.compared, verificationClean: verification.isClean,
            loadAverage: [loadAtStart, Self.loadAverage()], bars: [])
        report.bars = Self.bars(report)
        return report
    }

    /// Writers commit transactions of `rowsPerTransaction` price changes as fast as they can for
    /// `sustainedSeconds`; returns changes/s written, changes/s the projector applied meanwhile, and how long it
    /// needed afterwards to drain what was left.
    private func sustainedPhase(
        _ configuration: PostgresConfiguration, connection: PostgresConnection, driver: ProjectorDriver, ids: [Int64]
    ) throws -> (written: Double, applied: Double, drainSeconds: Double) {
        progress("sustained: \(settings.writers) writers x \(settings.rowsPerTransaction) rows per transaction, "
            + "offering \(Int(settings.sustainedOfferedRate)) changes/s for \(Int(settings.sustainedSeconds)) s")
        let shared = SustainedWriters()
        let group = DispatchGroup()
        let writers = settings.writers
        let perTransaction = settings.rowsPerTransaction
        let offered = settings.sustainedOfferedRate
        let seed = settings.seed
        let appliedBefore = driver.status.appliedChanges
        let started = monotonicNanoseconds()
        for writer in 0..<writers {
            DispatchQueue.global().async(group: group) {
                do {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    // Each writer owns the ids congruent to its number, so writers never wait on each other's locks.
                    let mine = stride(from: writer, to: ids.count, by: writers).map { ids[$0] }
                    var random = SplitMix64(seed: seed &+ UInt64(writer) &* 7_919)
                    // Paced: each writer commits one transaction per interval, so together they offer the rate.
                    let interval = UInt64(Double(writers * perTransaction) / offered * 1e9)
                    var due = monotonicNanoseconds()
                    while !shared.stop.load(ordering: .relaxed) {
                        let now = monotonicNanoseconds()
                        if due > now { usleep(useconds_t((due - now) / 1_000)) }
                        due += interval
                        var chosen = Set<Int64>()
                        while chosen.count < perTransaction { chosen.insert(mine[Int(random.next() % UInt64(mine.count))]) }
                        let result = try connection.query("""
                            UPDATE property.existing_properties SET price = price + 1
                            WHERE listing_id = ANY($1::bigint[])
                            """, ["{" + chosen.sorted().map(String.init).joined(separator: ",") + "}"])
                        shared.written.add(result.affectedRows, ordering: .relaxed)
                    }
                } catch {
                    shared.failure.withLock { $0 = "\(error)" }
                }
            }
        }
        usleep(useconds_t(settings.sustainedSeconds * 1_000_000))
        let appliedWhileWriting = driver.status.appliedChanges - appliedBefore
        let writingSeconds = Self.seconds(since: started)
        shared.stop.store(true, ordering: .relaxed)
        group.wait()
        if let message = shared.failure.withLock({ $0 }) { throw ProjectorBenchError("a writer failed: \(message)") }
        let total = shared.written.load(ordering: .relaxed)
        let drainStarted = monotonicNanoseconds()
        try waitUntilDrained(connection, driver: driver)
        return (Double(total) / writingSeconds, Double(appliedWhileWriting) / writingSeconds,
                Self.seconds(since: drainStarted))
    }

    private func waitUntilDrained(_ connection: PostgresConnection, driver: ProjectorDriver) throws {
        // Bounded (10 minutes): a projector far slower than the writers drains a large backlog here.
        let drained = try poll(attempts: 30_000, everyMicroseconds: 20_000) {
            let pending = try connection.query("SELECT count(*) FROM explore.change_outbox").first?
                .decode(0, as: Int64.self) ?? 0
            return try pending == 0
                && driver.status.appliedChanges == ProjectionStore.checkpoint(on: connection).appliedChanges
        }
        guard drained else { throw ProjectorBenchError("the projector did not drain the outbox within 10 minutes") }
    }

    /// One writer commits a transaction every 10 ms, its rows priced with the transaction's mark, at `rate`
    /// changes/s; the driver's hook records when each mark reaches the cache.
    private func freshnessPhase(
        _ configuration: PostgresConfiguration, rate: Double, marks: FreshnessMarks, ids: [Int64]
    ) throws -> Freshness {
        progress("freshness at \(Int(rate)) changes/s for \(Int(settings.freshnessSeconds)) s")
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        // Starts with no write-back pending, so none lands inside the phase (see `quiesceWrites`).
        quiesceWrites(connection)
        let interval: UInt64 = 10_000_000
        let perTransaction = max(1, Int(rate / 100))
        let transactions = Int(settings.freshnessSeconds * 100)
        var random = SplitMix64(seed: settings.seed &+ UInt64(rate))
        marks.reset(expecting: transactions)
        var changes = 0
        let started = monotonicNanoseconds()
        for sequence in 0..<transactions {
            let due = started + UInt64(sequence) * interval
            let now = monotonicNanoseconds()
            if due > now { usleep(useconds_t((due - now) / 1_000)) }
            var chosen = Set<Int64>()
            while chosen.count < perTransaction { chosen.insert(ids[Int(random.next() % UInt64(ids.count))]) }
            let result = try connection.query("""
                UPDATE property.existing_properties SET price = $2 WHERE listing_id = ANY($1::bigint[])
                """, ["{" + chosen.sorted().map(String.init).joined(separator: ",") + "}",
                      FreshnessMarks.base + Int64(sequence)])
            marks.committed(sequence, at: monotonicNanoseconds())
            changes += result.affectedRows
        }
        let achieved = Double(changes) / Self.seconds(since: started)
        // Let the last marks arrive (bounded).
        poll(attempts: 200, everyMicroseconds: 10_000) { marks.pending == 0 }
        let latencies = marks.latenciesMilliseconds().sorted()
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? .infinity : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
        }
        return Freshness(
            targetChangesPerSecond: rate, achievedChangesPerSecond: achieved, samples: latencies.count,
            p50Milliseconds: percentile(0.5), p99Milliseconds: percentile(0.99),
            maxMilliseconds: latencies.last ?? .infinity)
    }

    /// 1 % of the listings change in one transaction; the running projector applies it incrementally (timed from
    /// COMMIT until the projector has committed every entry to the table, and until the cache has them too), and
    /// the materialized view is then refreshed concurrently. Each round changes other listings.
    private func onePercentPhase(_ connection: PostgresConnection, driver: ProjectorDriver, round: Int) throws
        -> OnePercentRound
    {
        if round == 0 {
            progress("1 % change set: bringing the materialized view up to date first")
            try connection.executeScript(
                "REFRESH MATERIALIZED VIEW CONCURRENTLY \(ProjectionDefinition.materializedView)")
        }
        // Each round's REFRESH finds the view as vacuumed as the first one's does.
        try connection.executeScript("VACUUM ANALYZE \(ProjectionDefinition.materializedView)")
        try waitUntilDrained(connection, driver: driver)
        let count = max(1, settings.listings / 100)
        var random = SplitMix64(seed: settings.seed &+ 99 &+ UInt64(round))
        var chosen = Set<Int64>()
        let high = try connection.query("SELECT max(id) FROM property.listings").first?.decode(0, as: Int64.self) ?? 1
        while chosen.count < count { chosen.insert(1 + Int64(random.next() % UInt64(high))) }
        let array = "{" + chosen.sorted().map(String.init).joined(separator: ",") + "}"
        // CPU time is read per backend process, so only from a server on this machine (loopback or a socket). The
        // projector's backends are this database's other connections (the bench's others are closed by now).
        let local = try connection.query("""
            SELECT coalesce(inet_server_addr() << inet '127.0.0.0/8' OR inet_server_addr() = inet '::1', true)
            """).first?[0] == "t"
        let projectorBackends = local ? try connection.query("""
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            """).map { Int(try $0.decode(0, as: Int64.self)) } : nil
        let ownBackend = local
            ? try connection.query("SELECT pg_backend_pid()").first.map { Int(try $0.decode(0, as: Int64.self)) } : nil
        let before = driver.status
        try connection.executeScript("BEGIN")
        var entries = try connection.query(
            "UPDATE property.existing_properties SET price = price + 7 WHERE listing_id = ANY($1::bigint[])", [array])
            .affectedRows
        entries += try connection.query(
            "UPDATE property.developments SET price_to = price_to + 7 WHERE listing_id = ANY($1::bigint[])", [array])
            .affectedRows
        let name = "1 % change set, round \(round + 1) of \(settings.onePercentRounds)"
        progress("\(name): incremental apply by the projector")
        let databaseCPUBefore = projectorBackends.flatMap(ProcessCPU.postgresBackendsSeconds)
        let processCPUBefore = ProcessCPU.ownSeconds()
        try connection.executeScript("COMMIT")
        var started = monotonicNanoseconds()
        let target = before.appliedChanges + Int64(entries)
        poll(attempts: 600_000, everyMicroseconds: 500) { driver.status.committedChanges >= target }
        let committed = Self.seconds(since: started)
        poll(attempts: 600_000, everyMicroseconds: 500) { driver.status.appliedChanges >= target }
        let incremental = Self.seconds(since: started)
        let processCPU = ProcessCPU.ownSeconds() - processCPUBefore
        let databaseCPU = projectorBackends.flatMap(ProcessCPU.postgresBackendsSeconds).flatMap { now in
            databaseCPUBefore.map { now - $0 }
        }
        let after = driver.status
        progress("\(name): REFRESH MATERIALIZED VIEW CONCURRENTLY")
        let refreshCPUBefore = ownBackend.flatMap(ProcessCPU.postgresBackendSeconds)
        started = monotonicNanoseconds()
        try connection.executeScript("REFRESH MATERIALIZED VIEW CONCURRENTLY \(ProjectionDefinition.materializedView)")
        let refresh = Self.seconds(since: started)
        let refreshCPU = ownBackend.flatMap(ProcessCPU.postgresBackendSeconds).flatMap { now in
            refreshCPUBefore.map { now - $0 }
        }
        return OnePercentRound(
            listings: count, entries: entries, committedSeconds: committed, incrementalSeconds: incremental,
            batches: after.batches - before.batches, databaseSeconds: after.databaseSeconds - before.databaseSeconds,
            cacheSeconds: after.cacheSeconds - before.cacheSeconds, refreshSeconds: refresh,
            incrementalDatabaseCPUSeconds: databaseCPU, incrementalProcessCPUSeconds: processCPU,
            refreshCPUSeconds: refreshCPU)
    }

    // MARK: Report

    /// The 1-minute load average, from /proc/loadavg (0 where unavailable).
    static func loadAverage() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return 0 }
        return Double(text.split(separator: " ").first ?? "") ?? 0
    }

    static func bars(_ report: Report) -> [Bar] {
        var bars = [
            Bar(name: "cache bootstrap", value: format(report.bootstrapSeconds, digits: 2) + " s",
                target: "<= 5 s", pass: report.bootstrapSeconds <= 5),
            Bar(name: "changes/s applied while writing",
                value: grouped(report.appliedChangesPerSecondWhileWriting), target: ">= 20,000",
                pass: report.appliedChangesPerSecondWhileWriting >= 20_000),
        ]
        for run in report.freshness {
            bars.append(Bar(
                name: "freshness p99 at \(grouped(run.targetChangesPerSecond))/s",
                value: format(run.p99Milliseconds, digits: 1) + " ms", target: "<= 50 ms",
                pass: run.samples > 0 && run.p99Milliseconds <= 50))
        }
        bars.append(Bar(
            name: "1 % incremental, cache included, vs REFRESH (median of \(report.onePercent.count))",
            value: format(report.incrementalSpeedup, digits: 1) + "x",
            target: ">= 50x", pass: report.incrementalSpeedup >= 50))
        bars.append(Bar(name: "verification (sample)", value: report.verificationClean ? "clean" : "DIVERGED",
                        target: "clean", pass: report.verificationClean))
        return bars
    }

    static func printTable(_ report: Report) {
        let s = report.settings
        print("")
        print("projector benchmark: \(grouped(Double(s.listings))) listings generated, "
              + "\(grouped(Double(report.servedListings))) in the read model, seed \(s.seed)")
        print("  server: \(report.server)")
        print("  machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, load average "
              + report.loadAverage.map { format($0, digits: 1) }.joined(separator: " -> ")
              + " (start -> end of the run)")
        print("  seed (COPY, indexes, keys)        \(format(report.seedSeconds, digits: 1)) s")
        print("  full projection build             \(format(report.buildSeconds, digits: 2)) s")
        print("  REFRESH MV CONCURRENTLY (full)    \(format(report.fullRefreshConcurrentlySeconds, digits: 2)) s")
        print("  cache bootstrap                   \(format(report.bootstrapSeconds, digits: 2)) s "
              + "(COPY + decode \(format(report.bootstrapCopySeconds, digits: 2)) s, "
              + "store build \(format(report.bootstrapStoreSeconds, digits: 2)) s)")
        print("  sustained: \(s.writers) writers x \(s.rowsPerTransaction) rows/transaction offering "
              + "\(grouped(s.sustainedOfferedRate))/s for \(format(s.sustainedSeconds, digits: 0)) s: written "
              + "\(grouped(report.writtenChangesPerSecond))/s, "
              + "applied \(grouped(report.appliedChangesPerSecondWhileWriting))/s, then drained in "
              + "\(format(report.drainSecondsAfterWriters, digits: 2)) s")
        for run in report.freshness {
            print("  freshness at \(grouped(run.targetChangesPerSecond))/s (achieved "
                  + "\(grouped(run.achievedChangesPerSecond))/s, \(run.samples) commits): p50 "
                  + "\(format(run.p50Milliseconds, digits: 1)) ms, p99 \(format(run.p99Milliseconds, digits: 1)) ms, "
                  + "max \(format(run.maxMilliseconds, digits: 1)) ms")
        }
        if let first = report.onePercent.first {
            print("  1 % change sets (\(report.onePercent.count) rounds of \(grouped(Double(first.listings))) "
                  + "listings, \(grouped(Double(first.entries))) outbox entries), each applied incrementally from "
                  + "COMMIT, then REFRESH CONCURRENTLY:")
        }
        for (number, round) in report.onePercent.enumerated() {
            print("    round \(number + 1): REFRESH \(milliseconds(round.refreshSeconds)) ms; "
                  + "committed to the projection table (what REFRESH does) "
                  + "\(milliseconds(round.committedSeconds)) ms = "
                  + "\(format(round.committedSpeedup, digits: 1))x; also applied to the cache "
                  + "\(milliseconds(round.incrementalSeconds)) ms = "
                  + "\(format(round.incrementalSpeedup, digits: 1))x; \(round.batches) batches (the parts of a split "
                  + "batch count apart and overlap): database transactions \(milliseconds(round.databaseSeconds)) ms, "
                  + "cache \(milliseconds(round.cacheSeconds)) ms in all")
            print("      CPU: incremental apply \(milliseconds(round.incrementalCPUSeconds)) ms (PostgreSQL "
                  + "\(milliseconds(round.incrementalDatabaseCPUSeconds)) ms, this process "
                  + "\(milliseconds(round.incrementalProcessCPUSeconds)) ms), REFRESH "
                  + "\(milliseconds(round.refreshCPUSeconds)) ms in its backend")
        }
        print("    median: \(format(report.committedSpeedup, digits: 1))x to the table, "
              + "\(format(report.incrementalSpeedup, digits: 1))x with the cache")
        // What the machine allows: the apply cannot end before its CPU time spread over every core.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let cpu = report.onePercent.compactMap(\.incrementalCPUSeconds)
        if !cpu.isEmpty && cpu.count == report.onePercent.count {
            let floor = median(cpu) / Double(cores)
            let allowed = median(report.onePercent.map(\.refreshSeconds)) / 50
            print("    the apply's CPU spread over \(cores) cores (median): \(milliseconds(floor)) ms; 50x of the "
                  + "median REFRESH allows \(milliseconds(allowed)) ms")
        }
        print("")
        let width = report.bars.map { $0.name.count + 2 }.max() ?? 0
        print(pad("bar", width, right: false) + pad("measured", 14) + pad("target", 12) + "  result")
        for bar in report.bars {
            print(pad(bar.name, width, right: false) + pad(bar.value, 14) + pad(bar.target, 12)
                  + "  " + (bar.pass ? "PASS" : "FAIL"))
        }
    }

    /// Seconds as whole milliseconds; "n/a" for `nil`.
    static func milliseconds(_ seconds: Double?) -> String {
        seconds.map { format($0 * 1_000, digits: 0) } ?? "n/a"
    }

    /// The middle value (the mean of the middle two for an even count); NaN for none.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return (sorted[(sorted.count - 1) / 2] + sorted[sorted.count / 2]) / 2
    }

    static func format(_ value: Double, digits: Int) -> String {
        value.isFinite ? String(format: "%.\(digits)f", value) : "n/a"
    }

    static func grouped(_ value: Double) -> String {
        guard value.isFinite else { return "n/a" }
        let digits = String(Int(value.rounded()))
        var out = ""
        for (offset, character) in digits.reversed().enumerated() {
            if offset > 0 && offset % 3 == 0 && character != "-" { out.append(",") }
            out.append(character)
        }
        return String(out.reversed())
    }

    static func pad(_ text: String, _ width: Int, right: Bool = true) -> String {
        let padding = String(repeating: " ", count: max(0, width - text.count))
        return right ? padding + text : text + padding
    }
}

/// A failure of the projector benchmark, one line.
struct ProjectorBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What the sustained-phase writers share.
final class SustainedWriters: Sendable {
    let stop = Atomic<Bool>(false)
    let written = Atomic<Int>(0)
    let failure = Mutex<String?>(nil)
}

/// When each freshness transaction committed and when its mark reached the cache.
final class FreshnessMarks: @unchecked Sendable {
    /// Marks are prices from here on, far above any generated price.
    static let base: Int64 = 2_000_000_000
    private let lock = NSLock()
    private var committedAt: [UInt64?] = []
    private var visibleAt: [UInt64?] = []

    func reset(expecting count: Int) {
        lock.withLock {
            committedAt = Array(repeating: nil, count: count)
            visibleAt = Array(repeating: nil, count: count)
        }
    }

    func committed(_ sequence: Int, at time: UInt64) {
        lock.withLock { if sequence < committedAt.count { committedAt[sequence] = time } }
    }

    /// Called by the driver after a batch reached the cache.
    func observe(_ batch: ListingChangeBatch) {
        let now = monotonicNanoseconds()
        lock.withLock {
            for change in batch.changes {
                guard let price = change.row?.priceFrom, price >= Self.base else { continue }
                let sequence = Int(price - Self.base)
                if sequence < visibleAt.count && visibleAt[sequence] == nil { visibleAt[sequence] = now }
            }
        }
    }

    /// Committed transactions whose mark has not been seen yet.
    var pending: Int {
        lock.withLock { zip(committedAt, visibleAt).filter { $0.0 != nil && $0.1 == nil }.count }
    }

    /// Commit-to-visible latencies; the commit time is taken when COMMIT returned, so a mark can be seen a
    /// hair earlier: those count as 0.
    func latenciesMilliseconds() -> [Double] {
        lock.withLock {
            zip(committedAt, visibleAt).compactMap { pair in
                guard let committed = pair.0, let visible = pair.1 else { return nil }
                return visible > committed ? Double(visible - committed) / 1e6 : 0
            }
        }
    }
}

/// A throwaway cluster for the bench: `scripts/postgres-test-cluster`, with more shared buffers.
struct BenchCluster {
    let configuration: PostgresConfiguration
    let directory: String

    /// The repository root: the current directory when it holds the scripts, else found from this file's path.
    static let repositoryRoot: String = {
        let current = FileManager.default.currentDirectoryPath
        if FileManager.default.fileExists(atPath: current + "/scripts/postgres-test-cluster") { return current }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
    }()

    static func start() throws -> BenchCluster {
        // A file, not a pipe: the server pg_ctl starts may inherit the script's descriptors and keep a pipe open.
        let outputPath = NSTemporaryDirectory() + "explore-bench-cluster-\(getpid()).out"
        defer { unlink(outputPath) }
        let options = "-c shared_buffers=1GB -c work_mem=64MB -c maintenance_work_mem=512MB -c max_wal_size=4GB"
        guard runScript(["start"], environment: ["EXPLORE_TEST_POSTGRES_OPTIONS=\(options)"], stdout: outputPath) == 0
        else {
            throw ProjectorBenchError("scripts/postgres-test-cluster start failed (see its messages above)")
        }
        let data = FileManager.default.contents(atPath: outputPath) ?? Data()
        var values: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("export ") {
            let pair = line.dropFirst("export ".count).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { values[String(pair[0])] = String(pair[1].dropFirst().dropLast()) }
        }
        guard let url = values["EXPLORE_TEST_POSTGRES_URL"], let directory = values["EXPLORE_TEST_POSTGRES_DIR"] else {
            throw ProjectorBenchError("scripts/postgres-test-cluster start printed no URL")
        }
        return BenchCluster(configuration: try PostgresConfiguration(url: url), directory: directory)
    }

    func stop() {
        _ = Self.runScript(["stop", directory], environment: [], stdout: "/dev/null")
    }

    /// Runs the cluster script with posix_spawn and waits for it (Foundation's Process waits on a run loop the
    /// async entry point does not turn).
    static func runScript(_ arguments: [String], environment: [String], stdout: String) -> Int32 {
        let script = repositoryRoot + "/scripts/postgres-test-cluster"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let variables = ProcessInfo.processInfo.environment.filter { $0.key != "EXPLORE_TEST_POSTGRES_OPTIONS" }.map { "\($0.key)=\($0.value)" } + environment
        let argv = ([script] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        guard posix_spawn(&pid, script, &actions, nil, argv, envp) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }
}
