import ArgumentParser
import DemoData
import Migrations
import Postgres

/// `explore-projector seed-demo`: loads the deterministic demo data set with COPY.
struct SeedDemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed-demo",
        abstract: "Loads deterministic demo listings into the base tables (one transaction, COPY).",
        discussion: "Refuses a database whose base tables already hold rows unless --replace is given.")
    @OptionGroup var database: DatabaseOptions
    @Option(name: .customLong("listings"), help: "Number of listings to generate.")
    var listings: Int = 100_000
    @Option(name: .customLong("seed"), help: "Selects one of many equally realistic data sets.")
    var seed: UInt64 = 1
    @Flag(name: .customLong("replace"), help: "Delete the existing rows of the base tables first.")
    var replace = false

    func validate() throws {
        guard listings >= 0 && listings <= 50_000_000 else {
            throw ValidationError("--listings must be between 0 and 50000000")
        }
    }

    func run() throws {
        try runReportingFailure {
            let connection = try database.connect()
            defer { connection.close() }
            let clock = ContinuousClock()
            let start = clock.now
            let summary = try DemoSeeder.seed(DemoDataset(listings: listings, seed: seed), into: connection,
                                              replace: replace, progress: { printError("[\(formatDuration(clock.now - start))] \($0)") })
            let elapsed = clock.now - start
            try connection.executeScript("ANALYZE")
            print("""
                loaded in \(formatDuration(elapsed)): \
                \(summary.listings) listings (\(summary.developments) developments, \
                \(summary.existingProperties) existing properties), \(summary.media) media, \
                \(summary.locations) locations, \(summary.users) users, \(summary.organizations) organizations, \
                \(summary.drafts) drafts
                """)
        }
    }
}
