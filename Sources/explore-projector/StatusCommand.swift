import ArgumentParser
import ExploreClient
import ExploreQuery
import ExploreWire

/// `HOST:PORT` as given on the command line.
struct ServerAddress: ExpressibleByArgument, Sendable {
    var host: String
    var port: Int

    init?(argument: String) {
        guard let colon = argument.lastIndex(of: ":"), let port = Int(argument[argument.index(after: colon)...]),
              (1...65_535).contains(port) else { return nil }
        host = String(argument[..<colon])
        self.port = port
        if host.isEmpty { return nil }
    }
}

/// `explore-projector status --server HOST:PORT`: the server's STATS.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a server's statistics.")

    @Option(help: "Server address as HOST:PORT.")
    var server: ServerAddress

    @Option(help: "Request timeout in seconds.")
    var timeout: Int = 600

    @Option(help: "Admin token, needed by --rebuild and --verify.")
    var adminToken: String?

    @Flag(help: "Admin: rebuild the server's projection (table and cache, without downtime) first.")
    var rebuild = false

    @Flag(help: "Admin: compare the server's index with its source first.")
    var verify = false

    func run() async throws {
        let client = try await ExploreClient.connect(host: server.host, port: server.port, adminToken: adminToken,
                                                     timeout: .seconds(Int64(timeout)))
        let stats: ServerStatistics
        do {
            if rebuild {
                let report = try await client.rebuild()
                print("rebuilt \(report.listingCount) listings in \(report.durationMicroseconds / 1_000) ms")
            }
            if verify {
                let report = try await client.verify()
                print("verified \(report.checked) listings: \(report.mismatchCount) mismatches"
                    + (report.sampleMismatchIDs.isEmpty ? "" : ", e.g. ids \(report.sampleMismatchIDs.prefix(10))"))
            }
            stats = try await client.stats()
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        let enabledFilters = FilterField.allCases.filter { stats.features.enabledFilters.contains($0) }.map(\.name)
        let enabledTypes = ListingType.allCases.filter { stats.features.enabledListingTypes.contains($0) }.map(\.name)
        var lines: [(String, String)] = [
            ("server version", stats.serverVersion),
            ("protocol version", String(stats.protocolVersion)),
            ("listings", String(stats.listingCount)),
            ("memory bytes", String(stats.memoryBytes)),
            ("feed lag", stats.feedLagMicroseconds.map { "\($0) µs" } ?? "n/a (no feed)"),
            ("last applied change", stats.lastAppliedChange.map(String.init) ?? "n/a (no feed)"),
            ("uptime", String(format: "%.1f s", Double(stats.uptimeMicroseconds) / 1e6)),
            ("open connections", String(stats.openConnections)),
            ("enabled filters", enabledFilters.joined(separator: ",")),
            ("enabled listing types", enabledTypes.joined(separator: ",")),
        ]
        if let rebuild = stats.rebuild {
            let total: Int64? = rebuild.rowsTotal.map { Int64(clamping: $0) }
            lines.append(("rebuild", RebuildCommand.progressLine(
                phase: rebuild.phase, done: Int64(clamping: rebuild.rowsDone), total: total,
                elapsed: Double(rebuild.elapsedMicroseconds) / 1e6)))
        }
        let width = lines.map(\.0.count).max() ?? 0
        for (name, value) in lines {
            print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
    }
}
