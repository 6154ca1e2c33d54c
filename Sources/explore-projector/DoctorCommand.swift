import ArgumentParser
import Migrations
import Postgres

/// `explore-projector doctor`: the live schema versus what the migrations produce.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Compares the live schema with what the migrations produce; exits 1 on drift.",
        discussion: """
            Builds the expected schema by applying the migrations (up to the live database's applied version) \
            to a scratch database on the same server, then compares schemas, tables, columns, types, \
            nullability, defaults, constraints, indexes and functions. Needs CREATEDB.
            """)
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var migrations: MigrationsDirectoryOptions

    func run() throws {
        try runReportingFailure {
            let files = try migrations.load()
            let connection = try database.connect()
            defer { connection.close() }
            let report = try SchemaDoctor.examine(live: connection, files: files, log: { printError($0) })
            for line in report.drift { print("drift: \(line)") }
            if !report.pending.isEmpty {
                print("note: \(report.pending.count) migration(s) pending: "
                    + report.pending.joined(separator: ", ") + " (run migrate up)")
            }
            guard report.isClean else {
                throw CommandFailure("\(report.drift.count) difference(s) between the database and the migrations "
                    + "(compared at migration \(report.comparedVersion)); schema changes only happen through "
                    + "migrations: write one, or undo the manual change")
            }
            print("ok: the schema matches the migrations (compared at migration \(report.comparedVersion))")
        }
    }
}
