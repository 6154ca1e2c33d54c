import ArgumentParser
import Dispatch
import Foundation
import Migrations
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `explore-projector demo-writer`: keeps changing the demo database (price edits, media uploads, status flips,
/// an occasional location rename) at a steady rate, so a running `serve` has a feed to follow.
struct DemoWriterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-writer",
        abstract: "Keeps changing demo listings in the base tables at a steady rate.",
        discussion: """
            Each change is one small transaction on the base tables, like a user's edit: 55 % price edits, 25 % \
            media uploads, 19 % status flips (published, active, archived and back), 1 % location renames \
            (every listing at the location changes). Runs until --duration has passed or SIGINT/SIGTERM, then \
            prints a summary. A failed change is rolled back, counted and logged; the writer goes on, and \
            reconnects when the connection was lost.
            """)

    @OptionGroup var database: DatabaseOptions
    @Option(help: "Changes per second, e.g. 20 or 20/s; a target: one connection's round trips cap it.")
    var rate: Rate = Rate(perSecond: 20)
    @Option(help: "Stop after this many seconds (default: run until SIGINT/SIGTERM).") var duration: Double?
    @Option(help: "Selects the sequence of changes.") var seed: UInt64 = 1
    @Flag(help: "Print nothing but the summary.") var quiet = false

    /// `N` or `N/s`.
    struct Rate: ExpressibleByArgument {
        var perSecond: Double

        init(perSecond: Double) { self.perSecond = perSecond }

        init?(argument: String) {
            let number = argument.hasSuffix("/s") ? String(argument.dropLast(2)) : argument
            guard let value = Double(number), value > 0, value <= 100_000 else { return nil }
            perSecond = value
        }
    }

    func validate() throws {
        if let duration, !(duration > 0) { throw ValidationError("--duration must be > 0 seconds") }
    }

    func run() throws {
        let stop = StopFlag()
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.set() }
            source.resume()
            return source
        }
        defer { withExtendedLifetime(sources) {} }

        try runReportingFailure {
            var connection = try database.connect()
            defer { connection.close() }
            var writer = try DemoWriter(connection: connection, seed: seed)
            var summary = DemoWriter.Summary()
            let clock = ContinuousClock()
            let start = clock.now
            let interval = Duration.nanoseconds(Int64(1e9 / rate.perSecond))
            let end = duration.map { start + .nanoseconds(Int64($0 * 1e9)) }
            var next = start
            var lastReport = start
            if !quiet {
                printError("demo-writer: \(rate.perSecond) changes/s"
                    + (duration.map { " for \($0) s" } ?? " until SIGINT/SIGTERM"))
            }
            while !stop.isSet, end.map({ clock.now < $0 }) ?? true {
                do throws(PostgresError) {
                    let (change, changed) = try writer.step(on: connection)
                    if changed { summary.committed[change, default: 0] += 1 } else { summary.skipped += 1 }
                } catch {
                    summary.failed += 1
                    if !quiet { printError("demo-writer: change failed: \(PostgresErrorText.oneLine(error))") }
                    if !connection.isConnected {
                        connection.close()
                        usleep(500_000)
                        if let fresh = try? database.connect() { connection = fresh }
                    }
                }
                if !quiet && clock.now - lastReport >= .seconds(10) {
                    lastReport = clock.now
                    printError("demo-writer: \(summary.total) changes in \(formatDuration(clock.now - start))")
                }
                // Pace by the schedule, not by the last change, so slow changes do not lower the rate; a writer
                // that fell far behind skips ahead instead of bursting.
                next += interval
                let now = clock.now
                if next < now - .seconds(1) { next = now }
                if next > now { sleepUntil(next, clock: clock, stop: stop) }
            }
            let elapsed = clock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let kinds = DemoWriter.Change.allCases.map { "\(summary.committed[$0, default: 0]) \($0.rawValue)" }
            print("demo-writer: \(summary.total) changes in \(formatDuration(elapsed)) "
                + String(format: "(%.1f/s)", seconds > 0 ? Double(summary.total) / seconds : 0)
                + ": \(kinds.joined(separator: ", ")); \(summary.skipped) skipped, \(summary.failed) failed")
        }
    }

    private func sleepUntil(_ deadline: ContinuousClock.Instant, clock: ContinuousClock, stop: StopFlag) {
        while !stop.isSet {
            let left = deadline - clock.now
            guard left > .zero else { return }
            let micros = min(100_000, left.components.seconds * 1_000_000
                + left.components.attoseconds / 1_000_000_000_000)
            usleep(UInt32(max(1, micros)))
        }
    }
}

/// Set once by a signal handler, read by the writing loop.
final class StopFlag: @unchecked Sendable {
    // Safe: `stopped` is read and written only while holding `lock`.
    private let lock = NSLock()
    private var stopped = false

    func set() { lock.withLock { stopped = true } }
    var isSet: Bool { lock.withLock { stopped } }
}
