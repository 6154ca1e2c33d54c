import ArgumentParser
import Migrations
import Postgres

/// `explore-projector migrate up|down|status`.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Applies, reverts and lists the schema migrations in sql/.",
        discussion: """
            Each migration runs in its own transaction together with its row in public.migration_history, under \
            an advisory lock so concurrent runners never interleave. Applied migrations whose files changed or \
            disappeared are refused.
            """,
        subcommands: [Up.self, Down.self, Status.self])

    /// What every migrate subcommand needs: the database and the migration files.
    struct Target: ParsableArguments {
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var migrations: MigrationsDirectoryOptions

        /// Loads the files, connects, and hands `body` a runner; the connection closes afterwards, and a failure
        /// becomes the command's one error line.
        func withRunner(lockTimeout: Int = 60, _ body: (MigrationRunner) throws -> Void) throws {
            try runReportingFailure {
                let files = try migrations.load()
                let connection = try database.connect()
                defer { connection.close() }
                try body(MigrationRunner(connection: connection, files: files, lockWait: .seconds(lockTimeout),
                                         log: { print($0) }))
            }
        }
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Applies pending migrations in order.")
        @OptionGroup var target: Target
        @Option(name: .customLong("to"), help: "Stop after this migration number (default: apply all).")
        var lastMigration: Int?
        @Option(name: .customLong("lock-timeout"), help: "Seconds to wait for another runner's lock.")
        var lockTimeout: Int = 60

        func run() throws {
            try target.withRunner(lockTimeout: lockTimeout) { runner in
                let clock = ContinuousClock()
                let start = clock.now
                let steps = try runner.up(to: lastMigration)
                let elapsed = clock.now - start
                if steps.isEmpty {
                    print("nothing to apply: the database is up to date")
                } else {
                    print("applied \(steps.count) migration(s) in \(formatDuration(elapsed))")
                }
            }
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reverts the newest applied migrations.")
        @OptionGroup var target: Target
        @Option(name: .customLong("steps"), help: "How many migrations to revert, newest first.")
        var steps: Int = 1
        @Option(name: .customLong("lock-timeout"), help: "Seconds to wait for another runner's lock.")
        var lockTimeout: Int = 60

        func run() throws {
            try target.withRunner(lockTimeout: lockTimeout) { runner in
                let done = try runner.down(steps: steps)
                print("reverted \(done.count) migration(s)")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists every migration as applied, pending, drifted or missing; exits 1 on drift.")
        @OptionGroup var target: Target

        func run() throws {
            try target.withRunner { runner in
                let entries = try runner.status()
                var problems = 0
                for entry in entries {
                    switch entry.state {
                    case .applied:
                        print("applied   \(entry.identifier)  \(entry.applied?.appliedAt ?? "")  "
                            + "\(entry.applied?.durationMilliseconds ?? 0) ms")
                    case .pending:
                        print("pending   \(entry.identifier)")
                    case .drifted(let reason):
                        problems += 1
                        print("DRIFTED   \(entry.identifier)  \(reason)")
                    case .missingFile:
                        problems += 1
                        print("MISSING   \(entry.identifier)  applied, but its files are gone")
                    }
                }
                if problems > 0 {
                    throw CommandFailure("\(problems) applied migration(s) no longer match their files; restore "
                        + "them (migrations are append-only) before running migrate up or down")
                }
            }
        }
    }
}
