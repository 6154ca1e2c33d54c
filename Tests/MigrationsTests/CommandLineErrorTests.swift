import Foundation
import Migrations
import Postgres
import Testing
import TestSupport

/// The `explore-projector` executable's bad-input behaviour: one `error:` line on stderr, exit status 1.
/// `swift build` (which scripts/test runs first) puts the executable next to the test bundle.
@Suite("explore-projector errors", .timeLimit(.minutes(3)))
struct CommandLineErrorTests {
    typealias Outcome = BuiltExecutable.Outcome

    func run(_ arguments: [String], in directory: String? = nil) throws -> Outcome {
        try BuiltExecutable.run(arguments, in: directory)
    }

    func expectOneErrorLine(_ outcome: Outcome, mentioning words: [String]) {
        #expect(outcome.status == 1)
        let lines = outcome.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        #expect(lines.count == 1, "stderr: \(outcome.stderr)")
        for word in words {
            #expect(outcome.stderr.contains(word), "missing \(word) in: \(outcome.stderr)")
        }
    }

    /// A copy of sql/ in a temporary directory, so a test can change files.
    func copyOfMigrations() throws -> String {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("explore-migrations-\(UUID().uuidString)").path
        try FileManager.default.copyItem(atPath: MigrationFixtures.sqlDirectory, toPath: directory)
        return directory
    }

    @Test("a malformed URL, an unreachable server and a wrong password each give one clear line")
    func connectionErrors() throws {
        let server = try TestPostgres.serverConfiguration()
        expectOneErrorLine(try run(["migrate", "status", "--database-url", "mysql://nope",
                                    "--migrations-dir", MigrationFixtures.sqlDirectory]),
                           mentioning: ["invalid database URL"])
        expectOneErrorLine(try run(["migrate", "up", "--database-url", "postgres://postgres@127.0.0.1:1/x",
                                    "--migrations-dir", MigrationFixtures.sqlDirectory]),
                           mentioning: ["connection refused", "server is running"])
        var wrong = server
        wrong.password = "definitely-wrong"
        expectOneErrorLine(try run(["migrate", "up", "--database-url", wrong.url,
                                    "--migrations-dir", MigrationFixtures.sqlDirectory]),
                           mentioning: ["authentication failed", "password"])
        expectOneErrorLine(try run(["migrate", "up", "--database-url", server.url], in: "/"),
                           mentioning: ["--migrations-dir"])
    }

    @Test("a drifted migration and a migration failing halfway give one clear line and change nothing")
    func migrationErrors() throws {
        try TestPostgres.withDatabase { configuration in
            let directory = try copyOfMigrations()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let up = try run(["migrate", "up", "--database-url", configuration.url, "--migrations-dir", directory])
            #expect(up.status == 0, "\(up.stderr)")

            let edited = directory + "/0003_listings.up.sql"
            try (String(contentsOfFile: edited, encoding: .utf8) + "\n-- edited\n")
                .write(toFile: edited, atomically: true, encoding: .utf8)
            expectOneErrorLine(try run(["migrate", "up", "--database-url", configuration.url,
                                        "--migrations-dir", directory]),
                               mentioning: ["0003_listings", "drifted", "new migration"])
            let status = try run(["migrate", "status", "--database-url", configuration.url,
                                  "--migrations-dir", directory])
            #expect(status.status == 1)
            #expect(status.stdout.contains("DRIFTED   0003_listings"))

            let pristine = try copyOfMigrations()
            defer { try? FileManager.default.removeItem(atPath: pristine) }
            try "CREATE TABLE property.half (id integer);\nSELECT 1 / 0;\n"
                .write(toFile: pristine + "/0100_broken.up.sql", atomically: true, encoding: .utf8)
            try "DROP TABLE property.half;\n"
                .write(toFile: pristine + "/0100_broken.down.sql", atomically: true, encoding: .utf8)
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let lastApplied = try connection.query("SELECT max(version) FROM public.migration_history").first?[0]
            expectOneErrorLine(try run(["migrate", "up", "--database-url", configuration.url,
                                        "--migrations-dir", pristine]),
                               mentioning: ["0100_broken", "22012", "rolled back"])
            #expect(try connection.query("SELECT to_regclass('property.half') IS NULL").first?[0] == "t")
            #expect(try connection.query("SELECT max(version) FROM public.migration_history").first?[0] == lastApplied)
        }
    }
}
