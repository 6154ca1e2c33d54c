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

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Applies pending migrations in order.")
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var migrations: MigrationsDirectoryOptions
        @Option(name: .customLong("to"), help: "Stop after this migration number (default: apply all).")
        var target: Int?
        @Option(name: .customLong("lock-timeout"), help: "Seconds to wait for another runner's lock.")
        var lockTimeout: Int = 60

        func run() throws {
            try runReportingFailure {
                let files = try migrations.load()
                let connection = try database.connect()
                defer { connection.close() }
                let runner = MigrationRunner(connection: connection, files: files, lockWait: .seconds(lockTimeout),
                                             log: { print($0) })
                let clock = ContinuousClock()
                let start = clock.now
                let steps = try runner.up(to: target)
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
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var migrations: MigrationsDirectoryOptions
        @Option(name: .customLong("steps"), help: "How many migrations to revert, newest first.")
        var steps: Int = 1
        @Option(name: .customLong("lock-timeout"), help: "Seconds to wait for another runner's lock.")
        var lockTimeout: Int = 60

        func run() throws {
            try runReportingFailure {
                let files = try migrations.load()
                let connection = try database.connect()
                defer { connection.close() }
                let runner = MigrationRunner(connection: connection, files: files, lockWait: .seconds(lockTimeout),
                                             log: { print($0) })
                let done = try runner.down(steps: steps)
                print("reverted \(done.count) migration(s)")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists every migration as applied, pending, drifted or missing; exits 1 on drift.")
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var migrations: MigrationsDirectoryOptions

        func run() throws {
            try runReportingFailure {
                let files = try migrations.load()
                let connection = try database.connect()
                defer { connection.close() }
                let entries = try MigrationRunner(connection: connection, files: files).status()
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
