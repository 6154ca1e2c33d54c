import ArgumentParser
import Postgres
import Projector

/// `explore-projector verify`: the projection table versus the defining query over the base tables.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compares the projection table with the defining query; exits 1 on divergence.",
        discussion: """
            Reads both sides in one REPEATABLE READ snapshot and reports missing, extra and differing listings by \
            id. Listings that differ are then re-checked, each time in a new snapshot, for up to --settle seconds: \
            differences that go away meanwhile, and those explained by outbox entries the projector has not \
            applied yet, are reported as pending (the feed is behind), not as divergence. That covers the Kafka \
            feed too, whose events in flight leave no outbox entry when outbox capture is off. Under the Kafka \
            feed the stored offsets are listed.
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Compare about N random listings from each side instead of all of them.")
    var sample: Int?
    @Option(help: "Seconds to re-check differing listings before they count as divergence (0: no re-check).")
    var settle: Double = 2

    func validate() throws {
        if let sample, sample < 1 { throw ValidationError("--sample must be at least 1") }
        guard settle >= 0, settle <= 600 else { throw ValidationError("--settle must be between 0 and 600 seconds") }
    }

    func run() throws {
        try runReportingFailure {
            let connection = try database.connect()
            defer { connection.close() }
            let report: ProjectionVerifier.Report
            do {
                _ = try ProjectionStore.checkpoint(on: connection)
                report = try ProjectionVerifier.verifyTable(on: connection, sample: sample,
                                                            settle: .milliseconds(Int64(settle * 1_000)))
            } catch let error as ProjectorError where error.code == .notBuilt {
                throw CommandFailure("the projection has not been built yet: start the projector once, then verify")
            } catch {
                throw CommandFailure("\(error)")
            }
            func show(_ label: String, _ ids: [Int64]) {
                guard !ids.isEmpty else { return }
                let shown = ids.prefix(20).map(String.init).joined(separator: ", ")
                print("\(label): \(ids.count) (\(shown)\(ids.count > 20 ? ", …" : ""))")
            }
            show("missing", report.missing)
            show("extra", report.extra)
            show("differing", report.differing)
            show("pending", report.pending)
            if let offsets = try? connection.query("""
                SELECT topic, count(*), sum(next_offset) FROM explore.kafka_offsets GROUP BY topic ORDER BY topic
                """) {
                for row in offsets {
                    print("kafka feed: topic \(row[0] ?? "?"), \(row[1] ?? "0") partition(s), "
                        + "\(row[2] ?? "0") record(s) consumed")
                }
            }
            guard report.isClean else {
                throw CommandFailure("the projection diverges from its definition in "
                    + "\(report.missing.count + report.extra.count + report.differing.count) listing(s)")
            }
            print("ok: \(report.compared) listing(s) compared, no divergence")
        }
    }
}
