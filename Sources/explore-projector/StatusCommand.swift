import ArgumentParser
import ExploreClient
import ExploreQuery
import ExploreWire
import Foundation

/// `HOST:PORT` as given on the command line.
struct ServerAddress: ExpressibleByArgument, Sendable {
    var host: String
    var port: Int

    init?(argument: String) {
        guard let (host, port) = parseListenAddress(argument), port >= 1 else { return nil }
        self.host = host
        self.port = port
    }
}

/// `explore-projector status --server HOST:PORT [--json]`: the server's STATS, readable or as JSON.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show a server's statistics: listings, memory, feed lag and state.",
        discussion: """
            Prints everything STATS carries: listings, memory, the feed's lag (age of the oldest change not \
            applied yet) and pending changes, the last applied change, whether the feed is connected, its last \
            error, batches, failures, rejected events, and the progress of a rebuild in flight (phase, rows, \
            rows/s, ETA). --json prints the same as one JSON object.
            """)

    @Option(help: "Server address as HOST:PORT.")
    var server: ServerAddress

    @Option(help: "Request timeout in seconds.")
    var timeout: Int = 600

    @OptionGroup(title: "Admin (needed by --rebuild and --verify)")
    var admin: AdminTokenOptions

    @Flag(help: "Admin: rebuild the server's projection (table and cache, without downtime) first.")
    var rebuild = false

    @Flag(help: "Admin: compare the server's index with its source first.")
    var verify = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second") }
        if (rebuild || verify) && !admin.isGiven {
            throw ValidationError("--rebuild and --verify are admin operations: give --admin-token-file PATH")
        }
    }

    func run() async throws {
        let client = try await ExploreClient.connect(host: server.host, port: server.port, adminToken: admin.token(),
                                                     timeout: .seconds(Int64(timeout)))
        let stats: ServerStatistics
        var rebuilt: RebuildReport?
        var verified: VerifyReport?
        do {
            if rebuild { rebuilt = try await client.rebuild() }
            if verify { verified = try await client.verify() }
            stats = try await client.stats()
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        if json {
            print(StatusPrinter.json(stats, rebuilt: rebuilt, verified: verified))
            return
        }
        if let report = rebuilt {
            print("rebuilt \(report.listingCount) listings in \(report.durationMicroseconds / 1_000) ms")
        }
        if let report = verified {
            print("verified \(report.checked) listings: \(report.mismatchCount) mismatches"
                + (report.sampleMismatchIDs.isEmpty ? "" : ", e.g. ids \(report.sampleMismatchIDs.prefix(10))")
                + (report.pendingCount.map { $0 > 0 ? " (\($0) changed while checked, then agreed)" : "" } ?? ""))
        }
        print(StatusPrinter.text(stats))
    }
}

/// Renders `STATS` for people (aligned lines) or programs (JSON).
enum StatusPrinter {
    static func text(_ stats: ServerStatistics) -> String {
        let enabledFilters = FilterField.allCases.filter { stats.features.enabledFilters.contains($0) }.map(\.name)
        let enabledTypes = ListingType.allCases.filter { stats.features.enabledListingTypes.contains($0) }.map(\.name)
        var lines: [(String, String)] = [
            ("server version", stats.serverVersion),
            ("protocol version", String(stats.protocolVersion)),
            ("listings", String(stats.listingCount)),
            ("memory", String(format: "%.1f MiB (%llu bytes)", Double(stats.memoryBytes) / 1_048_576,
                              UInt64(stats.memoryBytes))),
            ("feed lag", stats.feedLagMicroseconds.map { String(format: "%.1f ms", Double($0) / 1_000) }
                ?? (stats.lastAppliedChange == nil ? "n/a (no feed)" : "n/a (not measured yet)")),
            ("last applied change", stats.lastAppliedChange.map(String.init) ?? "n/a (no feed)"),
        ]
        if let feed = stats.feed {
            lines += [
                ("pending changes", feed.pendingChanges.map(String.init) ?? "n/a"),
                ("feed connected", feed.isConnected ? "yes" : "no"),
                ("cache bootstrapped", feed.isBootstrapped ? "yes" : "no"),
                ("batches", String(feed.batches)),
                ("failures", String(feed.failures)),
                ("rejected events", String(feed.rejectedEvents)),
                ("last error", feed.lastError ?? "none"),
            ]
            if let rebuild = feed.rebuild {
                let total = rebuild.rowsTotal.map { " of \($0)" } ?? ""
                let eta = rebuild.etaSeconds.map { String(format: ", ETA %.0f s", $0) } ?? ""
                lines.append(("rebuild", "\(rebuild.phase.name): \(rebuild.rowsDone)\(total) rows, "
                    + String(format: "%.0f rows/s", rebuild.rowsPerSecond) + eta))
            } else {
                lines.append(("rebuild", "none"))
            }
        } else if stats.protocolVersion < WireProtocol.feedReportVersion {
            lines.append(("feed state", "n/a (the server speaks protocol version \(stats.protocolVersion))"))
        } else {
            lines.append(("feed state", "n/a (no feed)"))
        }
        lines += [
            ("uptime", String(format: "%.1f s", Double(stats.uptimeMicroseconds) / 1e6)),
            ("open connections", String(stats.openConnections)),
            ("enabled filters", enabledFilters.joined(separator: ",")),
            ("enabled listing types", enabledTypes.joined(separator: ",")),
        ]
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { name, value in name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value }
            .joined(separator: "\n")
    }

    static func json(_ stats: ServerStatistics, rebuilt: RebuildReport? = nil, verified: VerifyReport? = nil)
        -> String
    {
        var object: [String: Any] = [
            "server_version": stats.serverVersion,
            "protocol_version": Int(stats.protocolVersion),
            "listings": stats.listingCount,
            "memory_bytes": stats.memoryBytes,
            "feed_lag_ms": stats.feedLagMicroseconds.map { Double($0) / 1_000 } as Any? ?? NSNull(),
            "last_applied_change": stats.lastAppliedChange as Any? ?? NSNull(),
            "uptime_s": Double(stats.uptimeMicroseconds) / 1e6,
            "open_connections": stats.openConnections,
            "enabled_filters": FilterField.allCases.filter { stats.features.enabledFilters.contains($0) }.map(\.name),
            "enabled_listing_types": ListingType.allCases.filter { stats.features.enabledListingTypes.contains($0) }
                .map(\.name),
        ]
        if let feed = stats.feed {
            var feedObject: [String: Any] = [
                "connected": feed.isConnected,
                "bootstrapped": feed.isBootstrapped,
                "batches": feed.batches,
                "failures": feed.failures,
                "rejected_events": feed.rejectedEvents,
                "pending_changes": feed.pendingChanges as Any? ?? NSNull(),
                "last_error": feed.lastError as Any? ?? NSNull(),
                "rebuild": NSNull(),
            ]
            if let rebuild = feed.rebuild {
                feedObject["rebuild"] = [
                    "phase": rebuild.phase.name,
                    "rows_done": rebuild.rowsDone,
                    "rows_total": rebuild.rowsTotal as Any? ?? NSNull(),
                    "elapsed_s": Double(rebuild.elapsedMicroseconds) / 1e6,
                    "rows_per_second": rebuild.rowsPerSecond,
                    "eta_s": rebuild.etaSeconds as Any? ?? NSNull(),
                ] as [String: Any]
            }
            object["feed"] = feedObject
        } else {
            object["feed"] = NSNull()
        }
        if let rebuilt {
            object["rebuilt"] = ["listings": rebuilt.listingCount, "duration_us": rebuilt.durationMicroseconds]
        }
        if let verified {
            var report: [String: Any] = ["checked": verified.checked, "mismatches": verified.mismatchCount,
                                         "sample_mismatch_ids": verified.sampleMismatchIDs]
            if let pending = verified.pendingCount { report["pending"] = pending }
            object["verified"] = report
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
              let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }
}
