import ArgumentParser
import ExploreClient
import ExploreQuery
import ExploreWire
import Postgres
import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `explore-projector rebuild`: a full, zero-downtime rebuild of the projection table (and, through a server, of
/// its cache), directly against PostgreSQL or through a running server's admin REBUILD.
struct RebuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Rebuilds the projection table beside the live one and swaps it in, without downtime.",
        discussion: """
            With --database-url (or EXPLORE_POSTGRES_URL): when no projector follows the feed, this command takes \
            the feed's lock and rebuilds the table itself (the changes made meanwhile stay in the outbox for the \
            next projector). When a projector follows the feed (explore-projector serve), it asks that projector \
            through explore.projection_state and follows its progress; the projector also reloads its cache.

            With --server HOST:PORT --admin-token-file PATH: sends the server's admin REBUILD and follows its \
            progress through STATS.

            Progress lines (phase, rows, rate, ETA) go to stderr; the result goes to stdout.
            """)

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Rebuild through this server's admin REBUILD (HOST:PORT) instead of the database.")
    var server: ServerAddress?

    @OptionGroup(title: "Admin (with --server)")
    var admin: AdminTokenOptions

    @Option(help: "Listing ids per fill chunk, when this command rebuilds the table itself.")
    var chunkSize: Int64 = 50_000

    @Option(help: ArgumentHelp(
        "Seconds to wait for a rebuild run by a projector or a server to finish.",
        discussion: "A running projector must take up a request within 30 s."))
    var timeout: Int = 3_600

    func validate() throws {
        if server != nil && database.databaseURL != nil {
            throw ValidationError("give either --server or --database-url, not both")
        }
        if server != nil && !admin.isGiven {
            throw ValidationError("--server needs --admin-token-file (REBUILD is an admin operation)")
        }
        if server == nil && admin.isGiven {
            throw ValidationError("--admin-token-file and --admin-token go with --server")
        }
        guard chunkSize >= 1 else { throw ValidationError("--chunk-size must be at least 1") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1") }
    }

    func run() async throws {
        if let server {
            try await runThroughServer(server)
        } else {
            let (chunkSize, timeout, database) = (chunkSize, timeout, database)
            try await runBlocking {
                try runReportingFailure {
                    try Self.runDirect(database: database, chunkSize: chunkSize, timeout: timeout)
                }
            }
        }
    }

    // MARK: Direct

    private static func runDirect(database: DatabaseOptions, chunkSize: Int64, timeout: Int) throws {
        let postgres = try database.configuration()
        let connection = try database.connect()
        defer { connection.close() }
        let present = try connection.query("""
            SELECT to_regclass('explore.listings_projection') IS NOT NULL
               AND to_regclass('explore.projection_state') IS NOT NULL
            """)
        guard present.first?[0] == "t" else {
            throw CommandFailure("the projection tables are missing in database \(postgres.database): run "
                + "explore-projector migrate up")
        }
        let locked = try connection.query(
            "SELECT pg_try_advisory_lock(hashtext('explore.projector'), hashtext($1))",
            [ProjectionDefinition.feedName])
        guard locked.first?[0] == "t" else {
            try followRunningProjector(connection, timeout: timeout)
            return
        }
        do {
            if try ProjectionStore.buildIfNeeded(on: connection) {
                try RebuildStore.recordVersionIfAbsent(ProjectionQuery.shipped.version, on: connection)
                print("the projection had never been built: built it from the defining query")
                return
            }
        } catch {
            throw CommandFailure("\(error)")
        }
        // No projector follows the feed and this connection holds its lock: this process is the feed, with no
        // batches to apply, and performs the swap between its (empty) batches.
        let coordinator = RebuildCoordinator(
            configuration: .init(postgres: postgres, machine: .init(chunkSize: chunkSize), upgradesOnStart: false),
            index: nil)
        let outcome = RebuildOutcomeBox()
        DetachedThread {
            outcome.set(Result { () throws(ProjectorError) in
                try coordinator.run(reason: "explore-projector rebuild")
            })
        }.start()
        var lastPrinted = ContinuousClock.now
        while true {
            if let result = outcome.value {
                let summary: RebuildSummary
                do {
                    summary = try result.get()
                } catch {
                    throw CommandFailure("\(error)")
                }
                print("rebuilt explore.listings_projection: \(summary.rows) rows in "
                    + String(format: "%.2f s", summary.seconds) + " (projection version \(summary.version), "
                    + "\(summary.swapAttempts) swap attempt\(summary.swapAttempts == 1 ? "" : "s"))")
                return
            }
            if coordinator.isRunning { coordinator.betweenBatches(connection: connection) }
            if ContinuousClock.now - lastPrinted >= .seconds(1), let progress = coordinator.progress {
                printError(progressLine(phase: progress.phase.rawValue, done: progress.rowsDone,
                                        total: progress.rowsTotal, elapsed: progress.elapsedSeconds))
                lastPrinted = ContinuousClock.now
            }
            usleep(10_000)
        }
    }

    /// A projector holds the feed's lock: ask it through the state table and follow its progress there.
    private static func followRunningProjector(_ connection: PostgresConnection, timeout: Int) throws {
        printError("a projector follows this feed (explore-projector serve?): asking it to rebuild")
        let requested = try connection.query("SELECT clock_timestamp()::text").first?[0] ?? ""
        do {
            try RebuildStore.requestRebuild(on: connection)
        } catch {
            throw CommandFailure("\(error)")
        }
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: .seconds(timeout))
        var started = false
        while clock.now < deadline {
            usleep(500_000)
            let rows = try connection.query("""
                SELECT rebuild_started_at >= $1::timestamptz, rebuild_finished_at >= rebuild_started_at,
                       rebuild_phase, rebuild_rows_done, rebuild_rows_total,
                       extract(epoch FROM clock_timestamp() - rebuild_started_at)::float8, rebuild_error,
                       extract(epoch FROM rebuild_finished_at - rebuild_started_at)::float8, version
                FROM explore.projection_state WHERE projection = $2
                """, [requested, ProjectionDefinition.feedName])
            guard let row = rows.first else { continue }
            guard row[0] == "t" else {
                if !started && clock.now - start > .seconds(30) {
                    throw CommandFailure("no projector took up the rebuild request within 30 s; the request "
                        + "stays recorded for the next projector that starts")
                }
                continue
            }
            started = true
            if row[1] == "t" {
                if let error = row[6] { throw CommandFailure("the projector's rebuild failed: \(error)") }
                let seconds = row[7].flatMap { Double($0) } ?? 0
                print("rebuilt explore.listings_projection through the running projector: "
                    + "\(row[3] ?? "?") rows in " + String(format: "%.2f s", seconds)
                    + " (projection version \(row[8] ?? "?"))")
                return
            }
            if let phase = row[2] {
                printError(progressLine(phase: phase, done: row[3].flatMap { Int64($0) } ?? 0,
                                        total: row[4].flatMap { Int64($0) },
                                        elapsed: row[5].flatMap { Double($0) } ?? 0))
            }
        }
        throw CommandFailure("the rebuild did not finish within \(timeout) s (--timeout)")
    }

    // MARK: Through a server

    private func runThroughServer(_ server: ServerAddress) async throws {
        let token: String?
        do {
            token = try admin.token()
        } catch {
            printError("error: \(error.description)")
            throw ExitCode.failure
        }
        let client: ExploreClient
        let watcher: ExploreClient
        do {
            client = try await ExploreClient.connect(host: server.host, port: server.port, adminToken: token,
                                                     timeout: .seconds(Int64(timeout)))
            watcher = try await ExploreClient.connect(host: server.host, port: server.port, timeout: .seconds(10))
        } catch {
            printError("error: cannot reach the server at \(server.host):\(server.port): \(error)")
            throw ExitCode.failure
        }
        let poller = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard !Task.isCancelled, let stats = try? await watcher.stats(), let rebuild = stats.feed?.rebuild else {
                    continue
                }
                printError(Self.progressLine(
                    phase: rebuild.phase.name, done: Int64(clamping: rebuild.rowsDone),
                    total: rebuild.rowsTotal.map { Int64(clamping: $0) },
                    elapsed: Double(rebuild.elapsedMicroseconds) / 1e6))
            }
        }
        let outcome: Result<RebuildReport, ExploreClientError>
        do {
            outcome = .success(try await client.rebuild())
        } catch {
            outcome = .failure(error)
        }
        poller.cancel()
        _ = await poller.value
        await watcher.close()
        await client.close()
        switch outcome {
        case .success(let report):
            print("rebuilt through \(server.host):\(server.port): serving \(report.listingCount) listings after "
                + String(format: "%.2f s", Double(report.durationMicroseconds) / 1e6))
        case .failure(let error):
            printError("error: the server's REBUILD failed: \(error)")
            throw ExitCode.failure
        }
    }

    // MARK: Output

    /// `building: 150000/1000000 rows (15%), 52000 rows/s, ETA 16 s, 2.9 s elapsed`.
    static func progressLine(phase: String, done: Int64, total: Int64?, elapsed: Double) -> String {
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        var line = "\(phase): \(done)"
        if let total, total > 0 {
            line += "/\(total) rows (\(min(100, done * 100 / total))%)"
        } else {
            line += " rows"
        }
        // Once a phase has all its rows (the store is then built from them), a rate would only fall with time.
        guard total.map({ done < $0 }) ?? true else { return line + String(format: ", %.1f s elapsed", elapsed) }
        line += String(format: ", %.0f rows/s", rate)
        if let total, rate > 0, phase == "building" {
            line += String(format: ", ETA %.0f s", Double(max(0, total - done)) / rate)
        }
        return line + String(format: ", %.1f s elapsed", elapsed)
    }
}

/// The outcome of the rebuild thread, read by the command's loop.
private final class RebuildOutcomeBox: @unchecked Sendable {
    // Safe: `result` is only touched while holding `mutex`.
    private var mutex = pthread_mutex_t()
    private var result: Result<RebuildSummary, ProjectorError>?

    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    func set(_ value: Result<RebuildSummary, ProjectorError>) {
        pthread_mutex_lock(&mutex)
        result = value
        pthread_mutex_unlock(&mutex)
    }

    var value: Result<RebuildSummary, ProjectorError>? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return result
    }
}

/// Runs blocking work on its own thread so the async command's cooperative pool stays free.
private func runBlocking(_ work: @escaping @Sendable () throws -> Void) async throws {
    let result: Result<Void, any Error> = await withCheckedContinuation { continuation in
        DetachedThread { continuation.resume(returning: Result { try work() }) }.start()
    }
    try result.get()
}
