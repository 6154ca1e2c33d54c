import ArgumentParser

/// The `explore-projector` command: schema management, demo data, the Explore service and its clients.
///
/// The root is async because the service and its clients are. The schema commands stay synchronous: the async
/// entry point runs them on the main thread, so their blocking libpq calls never occupy Swift's cooperative pool.
@main
struct ExploreProjector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore-projector",
        abstract: "Keeps the Explore read model of the listings database and serves searches over it.",
        subcommands: [
            MigrateCommand.self, DoctorCommand.self, SeedDemoCommand.self, VerifyCommand.self,
            ServeCommand.self, QueryCommand.self, StatusCommand.self, RebuildCommand.self, DemoWriterCommand.self,
            OutboxCaptureCommand.self,
        ])
}
