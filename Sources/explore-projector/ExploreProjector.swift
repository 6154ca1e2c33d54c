import ArgumentParser

/// The `explore-projector` command: schema management, demo data, and (with later changes) the projector and
/// the Explore service.
///
/// `main` is synchronous on purpose: the commands here block on libpq, which must not run on Swift's cooperative
/// thread pool.
@main
struct ExploreProjector: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore-projector",
        abstract: "Keeps the Explore read model of the listings database and manages its schema.",
        subcommands: [MigrateCommand.self, DoctorCommand.self, SeedDemoCommand.self, VerifyCommand.self])
}
