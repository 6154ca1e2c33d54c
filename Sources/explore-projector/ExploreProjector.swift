import ArgumentParser

@main
struct ExploreProjector: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore-projector",
        abstract: "Explore projection service.",
        subcommands: [QueryCommand.self, StatusCommand.self, ServeCommand.self]
    )
}
