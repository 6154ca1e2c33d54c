import ArgumentParser
import Migrations
import Postgres
import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The admin token of a server's admin operations, shared by `status` and `rebuild`: from a file (preferred: a
/// token given on the command line shows in the process list and the shell's history) or given directly.
struct AdminTokenOptions: ParsableArguments {
    @Option(help: "File holding the server's admin token (its content, trimmed).")
    var adminTokenFile: String?

    @Option(help: "The admin token itself (other users can see it in the process list; prefer --admin-token-file).")
    var adminToken: String?

    var isGiven: Bool { adminTokenFile != nil || adminToken != nil }

    func validate() throws {
        if adminTokenFile != nil && adminToken != nil {
            throw ValidationError("give either --admin-token-file or --admin-token, not both")
        }
        if adminToken?.isEmpty == true { throw ValidationError("--admin-token must not be empty") }
    }

    /// The token, read from the file when one is given; nil when neither option is.
    func token() throws(CommandFailure) -> String? {
        if let adminTokenFile { return try readAdminToken(path: adminTokenFile) }
        return adminToken
    }
}

/// `--database-url`, shared by every command that talks to PostgreSQL.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database-url"),
            help: ArgumentHelp("PostgreSQL URL, postgres://user:password@host:port/database.",
                               discussion: "Defaults to the EXPLORE_POSTGRES_URL environment variable."))
    var databaseURL: String?

    /// The configuration from `--database-url` or `EXPLORE_POSTGRES_URL`.
    func configuration() throws(CommandFailure) -> PostgresConfiguration {
        do {
            if let databaseURL { return try PostgresConfiguration(url: databaseURL) }
            guard getenv("EXPLORE_POSTGRES_URL") != nil else {
                throw CommandFailure("no database given: pass --database-url postgres://user:password@host:port/db "
                    + "or set EXPLORE_POSTGRES_URL")
            }
            return try PostgresConfiguration.fromEnvironment("EXPLORE_POSTGRES_URL")
        } catch let error as PostgresError {
            throw CommandFailure("invalid database URL: \(error.message); expected "
                + "postgres://user:password@host:port/database")
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("invalid database URL: \(error)")
        }
    }

    /// Connects, turning connection failures into one line naming the cause and what to do.
    func connect() throws(CommandFailure) -> PostgresConnection {
        let configuration = try configuration()
        do {
            return try PostgresConnection.connect(configuration)
        } catch {
            throw CommandFailure.connection(error, configuration)
        }
    }
}

/// `--migrations-dir`, shared by the commands that read the migration files.
struct MigrationsDirectoryOptions: ParsableArguments {
    @Option(name: .customLong("migrations-dir"),
            help: "Directory holding the NNNN_name.up.sql / .down.sql files, relative to the current directory.")
    var migrationsDirectory: String = "sql"

    func load() throws(CommandFailure) -> [MigrationFile] {
        do {
            return try MigrationFile.load(directory: migrationsDirectory)
        } catch {
            throw CommandFailure(error.message)
        }
    }
}

/// A command failure: one line for stderr, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }

    static func connection(_ error: PostgresError, _ configuration: PostgresConfiguration) -> CommandFailure {
        let target = "\(configuration.host):\(configuration.port)/\(configuration.database)"
        switch error.code {
        case .authenticationFailed:
            return CommandFailure("cannot log in to PostgreSQL at \(target) as \(configuration.user): "
                + "\(error.message); check the user and password in --database-url / EXPLORE_POSTGRES_URL "
                + "(create the role if it is missing)")
        case .connectionFailed where error.sqlState == "3D000":
            return CommandFailure("\(error.message); create it (createdb \(configuration.database)) or fix the "
                + "database name in --database-url / EXPLORE_POSTGRES_URL")
        default:
            return CommandFailure("cannot connect to PostgreSQL at \(target): \(error.message); check that the "
                + "server is running and that --database-url / EXPLORE_POSTGRES_URL points at it")
        }
    }
}

/// Runs a command body, printing a failure as `error: …` on stderr and exiting non-zero.
func runReportingFailure(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let failure as CommandFailure {
        printError("error: \(failure.description)")
        throw ExitCode.failure
    } catch let error as MigrationError {
        printError("error: \(error.message)")
        throw ExitCode.failure
    } catch let error as PostgresError {
        printError("error: \(PostgresErrorText.oneLine(error))")
        throw ExitCode.failure
    } catch let error as ProjectorError {
        printError("error: \(error.message)")
        throw ExitCode.failure
    }
}

/// Writes a line to stderr (progress and errors; stdout is for results).
func printError(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { return }
        offset += written
    }
}

/// `1234 ms` / `12.35 s`, for timings printed to the operator.
func formatDuration(_ duration: Duration) -> String {
    let milliseconds = Int(duration.components.seconds) * 1_000
        + Int(duration.components.attoseconds / 1_000_000_000_000_000)
    guard milliseconds >= 10_000 else { return "\(milliseconds) ms" }
    let hundredths = milliseconds / 10
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) s"
}
