public import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Applies and reverts migrations on one database, keeping `public.migration_history` in step.
///
/// Every migration runs in its own transaction together with its history row, so a failing migration leaves
/// the database exactly as it was. A session-level advisory lock serializes runners: two `migrate` processes
/// against one database never interleave, and the second one sees the first one's history once it gets the lock.
/// Synchronous: the connection's blocking libpq calls run on the calling thread.
public final class MigrationRunner {
    /// The fixed advisory-lock key of the migration runner ("EXMG"). Advisory locks are per database.
    public static let advisoryLockKey: Int64 = 0x4558_4D47
    /// The history table's qualified name.
    public static let historyTable = "public.migration_history"

    public let connection: PostgresConnection
    public let files: [MigrationFile]
    /// How long to wait for another runner to release the lock before giving up.
    public var lockWait: Duration
    /// Receives one line per step (applied, reverted, waiting for the lock).
    public var log: (String) -> Void

    /// Creates a runner.
    /// - Parameters:
    ///   - connection: the database to migrate; the runner does not close it.
    ///   - files: the migrations, usually `MigrationFile.load(directory:)`.
    ///   - lockWait: how long to wait for a concurrent runner (default 60 s).
    ///   - log: progress lines (default: discarded).
    public init(connection: PostgresConnection, files: [MigrationFile], lockWait: Duration = .seconds(60),
                log: @escaping (String) -> Void = { _ in }) {
        self.connection = connection
        self.files = files.sorted { $0.version < $1.version }
        self.lockWait = lockWait
        self.log = log
    }

    /// What one `up` or `down` step did.
    public struct Step: Sendable, Hashable {
        public var migration: String
        public var durationMilliseconds: Int
    }

    /// The history rows, oldest first; empty when the history table does not exist yet.
    public func appliedMigrations() throws(MigrationError) -> [AppliedMigration] {
        do {
            let exists = try connection.query("SELECT to_regclass($1) IS NOT NULL", [Self.historyTable])
            guard try exists.first?.decode(0, as: Bool.self) == true else { return [] }
            let rows = try connection.query("""
                SELECT version, name, checksum, down_checksum, applied_at::text, duration_ms
                FROM public.migration_history ORDER BY version
                """)
            var applied: [AppliedMigration] = []
            for row in rows {
                applied.append(AppliedMigration(
                    version: try row.decode(0, as: Int.self), name: try row.decode(1, as: String.self),
                    checksum: try row.decode(2, as: String.self), downChecksum: try row.decode(3, as: String.self),
                    appliedAt: try row.decode(4, as: String.self),
                    durationMilliseconds: try row.decode(5, as: Int.self)))
            }
            return applied
        } catch {
            throw Self.databaseError("reading the migration history failed", error)
        }
    }

    /// Every migration with its state (applied, pending, drifted, missing file).
    public func status() throws(MigrationError) -> [MigrationStatusEntry] {
        MigrationPlanner.status(files: files, applied: try appliedMigrations())
    }

    /// Applies the pending migrations (up to and including `target`) in order, each in its own transaction.
    /// - Returns: the migrations applied; empty when there was nothing to do.
    /// - Throws: planner errors (drift, missing file, bad target), `.lockTimeout`, `.migrationFailed` (that
    ///   migration was rolled back; earlier ones of this run stay applied).
    @discardableResult
    public func up(to target: Int? = nil) throws(MigrationError) -> [Step] {
        try withLock { () throws(MigrationError) -> [Step] in
            try ensureHistoryTable()
            let plan = try MigrationPlanner.planUp(files: files, applied: try appliedMigrations(), target: target)
            var steps: [Step] = []
            for migration in plan {
                steps.append(try apply(migration))
            }
            return steps
        }
    }

    /// Reverts the newest `steps` applied migrations, newest first, each in its own transaction.
    /// - Throws: planner errors, `.lockTimeout`, `.migrationFailed`.
    @discardableResult
    public func down(steps: Int = 1) throws(MigrationError) -> [Step] {
        try withLock { () throws(MigrationError) -> [Step] in
            try ensureHistoryTable()
            let plan = try MigrationPlanner.planDown(files: files, applied: try appliedMigrations(), steps: steps)
            var done: [Step] = []
            for migration in plan {
                done.append(try revert(migration))
            }
            return done
        }
    }

    private func apply(_ migration: MigrationFile) throws(MigrationError) -> Step {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try connection.transaction {
                try connection.executeScript(migration.upSQL)
                let milliseconds = Self.milliseconds(clock.now - start)
                try connection.query("""
                    INSERT INTO public.migration_history (version, name, checksum, down_checksum, duration_ms)
                    VALUES ($1, $2, $3, $4, $5)
                    """, [migration.version, migration.name, migration.checksum, migration.downChecksum,
                          milliseconds])
            }
        } catch {
            throw Self.failure(migration, direction: "up", error)
        }
        let step = Step(migration: migration.identifier, durationMilliseconds: Self.milliseconds(clock.now - start))
        log("applied \(step.migration) (\(step.durationMilliseconds) ms)")
        return step
    }

    private func revert(_ migration: MigrationFile) throws(MigrationError) -> Step {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try connection.transaction {
                try connection.executeScript(migration.downSQL)
                try connection.query("DELETE FROM public.migration_history WHERE version = $1", [migration.version])
            }
        } catch {
            throw Self.failure(migration, direction: "down", error)
        }
        let step = Step(migration: migration.identifier, durationMilliseconds: Self.milliseconds(clock.now - start))
        log("reverted \(step.migration) (\(step.durationMilliseconds) ms)")
        return step
    }

    /// Creates the history table when absent. Runs under the lock, so concurrent runners cannot race on it.
    private func ensureHistoryTable() throws(MigrationError) {
        do {
            // Checked first rather than `IF NOT EXISTS`, whose NOTICE would reach the operator's terminal.
            let exists = try connection.query("SELECT to_regclass($1) IS NOT NULL", [Self.historyTable])
            if try exists.first?.decode(0, as: Bool.self) == true { return }
            try connection.executeScript("""
                CREATE TABLE public.migration_history (
                    version       integer     PRIMARY KEY CHECK (version > 0),
                    name          text        NOT NULL,
                    checksum      text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
                    down_checksum text        NOT NULL CHECK (down_checksum ~ '^[0-9a-f]{64}$'),
                    applied_at    timestamptz NOT NULL DEFAULT now(),
                    duration_ms   integer     NOT NULL CHECK (duration_ms >= 0)
                )
                """)
        } catch {
            throw Self.databaseError("creating public.migration_history failed", error)
        }
    }

    /// Runs `body` holding the migration advisory lock, waiting up to `lockWait` for another holder.
    public func withLock<T>(_ body: () throws(MigrationError) -> T) throws(MigrationError) -> T {
        let clock = ContinuousClock()
        let deadline = clock.now + lockWait
        var announced = false
        while true {
            let acquired: Bool
            do {
                acquired = try connection.query("SELECT pg_try_advisory_lock($1)", [Self.advisoryLockKey])
                    .first?.decode(0, as: Bool.self) ?? false
            } catch {
                throw Self.databaseError("taking the migration lock failed", error)
            }
            if acquired { break }
            if clock.now >= deadline {
                throw MigrationError(.lockTimeout,
                    "another migration runner holds the migration lock (\(lockHolder())) and did not release it "
                    + "within \(lockWait); wait for it to finish, or end that session if it is stuck")
            }
            if !announced {
                log("waiting for the migration lock held by \(lockHolder())")
                announced = true
            }
            usleep(100_000)
        }
        defer { _ = try? connection.query("SELECT pg_advisory_unlock($1)", [Self.advisoryLockKey]) }
        return try body()
    }

    /// Who holds the lock, for error messages: backend pid, application and client address.
    private func lockHolder() -> String {
        let row = try? connection.query("""
            SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), coalesce(a.client_addr::text, 'local'),
                   a.backend_start::text
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            LIMIT 1
            """, [Self.advisoryLockKey]).first
        guard let row, let pid = row[0] else { return "an unknown session" }
        return "backend pid \(pid), application \(row[1] ?? "?"), client \(row[2] ?? "?"), since \(row[3] ?? "?")"
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds) * 1_000 + Int(duration.components.attoseconds / 1_000_000_000_000_000)
    }

    /// One line for a failed migration: what failed, that it was rolled back, and what to do about it.
    static func failure(_ migration: MigrationFile, direction: String, _ error: any Error) -> MigrationError {
        guard let postgres = error as? PostgresError else {
            return MigrationError(.migrationFailed,
                "migration \(migration.identifier) (\(direction)) failed and was rolled back: \(error)")
        }
        let state = postgres.sqlState.map { " (SQLSTATE \($0))" } ?? ""
        let cause = PostgresErrorText.firstLine(postgres.message) + state
        let advice: String
        switch postgres.sqlState {
        case "42P07", "42701", "42710", "42P06", "42723":
            advice = "the objects it creates already exist, so the database was changed outside the migrations "
                + "(a half-applied or manual change); run `explore-projector doctor` and repair the schema by hand"
        case "42P01", "3F000", "42703", "42883", "42704":
            advice = "an object it expects is missing, so the database was changed outside the migrations; run "
                + "`explore-projector doctor` and repair the schema by hand"
        case "42501":
            advice = "the role lacks a privilege; run migrations as the schema owner or a superuser"
        case let code? where code.hasPrefix("08"):
            advice = "the connection broke; check the server and run the command again"
        default:
            advice = direction == "up"
                ? "fix \(migration.identifier).up.sql (it is not applied yet) and run `migrate up` again"
                : "fix the cause and run the command again"
        }
        return MigrationError(.migrationFailed,
            "migration \(migration.identifier) (\(direction)) failed: \(cause); it was rolled back and the "
            + "database is unchanged; \(advice)", underlying: postgres)
    }

    static func databaseError(_ what: String, _ error: any Error) -> MigrationError {
        let text = (error as? PostgresError).map { PostgresErrorText.oneLine($0) } ?? "\(error)"
        return MigrationError(.database, "\(what): \(text)", underlying: error as? PostgresError)
    }
}

/// Renders a `PostgresError` for a human: the server's message and SQLSTATE, without the type name.
public enum PostgresErrorText {
    /// The server's first message line plus `(SQLSTATE xxxxx)` when known.
    public static func oneLine(_ error: PostgresError) -> String {
        firstLine(error.message) + (error.sqlState.map { " (SQLSTATE \($0))" } ?? "")
    }

    static func firstLine(_ text: String) -> String {
        String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            .trimmingWhitespace()
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
