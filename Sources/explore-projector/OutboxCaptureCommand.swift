import ArgumentParser
import Postgres
import Projector

/// `explore-projector outbox-capture on|off|status`: the base-table triggers feeding the outbox.
struct OutboxCaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox-capture",
        abstract: "Switches the base-table triggers that feed the outbox on or off, or shows them.",
        discussion: """
            A deployment fed by Kafka alone (serve --feed kafka) can switch capture off: writers stop appending \
            every change to explore.change_outbox, which that feed only prunes. The outbox feed refuses to start \
            while capture is off. Changes committed meanwhile never reach the outbox, so going back to the \
            outbox feed takes `outbox-capture on` and then `rebuild`. Switching takes a short lock on each base \
            table and needs their owner.
            """,
        subcommands: [Status.self, On.self, Off.self],
        defaultSubcommand: Status.self)

    /// Lists every capture trigger; exits 1 when capture is partly off.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists the capture triggers and whether they fire; exits 1 when only some do.")
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            try runReportingFailure {
                let connection = try database.connect()
                defer { connection.close() }
                let triggers = try OutboxCapture.triggers(on: connection)
                guard !triggers.isEmpty else {
                    throw CommandFailure("no capture trigger found: run explore-projector migrate up")
                }
                for trigger in triggers {
                    print("\(trigger.isEnabled ? "on " : "off") \(trigger.table) \(trigger.name)")
                }
                let on = triggers.filter(\.isEnabled).count
                if on == triggers.count {
                    print("outbox capture is on")
                } else if on == 0 {
                    print("outbox capture is off")
                } else {
                    throw CommandFailure("outbox capture is partly off (\(on) of \(triggers.count) triggers on): "
                        + "run explore-projector outbox-capture on or off")
                }
            }
        }
    }

    struct On: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Switches every capture trigger on.")
        @OptionGroup var database: DatabaseOptions

        func run() throws { try OutboxCaptureCommand.switchCapture(on: true, database: database) }
    }

    struct Off: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Switches every capture trigger off (for a deployment fed by Kafka alone).")
        @OptionGroup var database: DatabaseOptions

        func run() throws { try OutboxCaptureCommand.switchCapture(on: false, database: database) }
    }

    static func switchCapture(on enabled: Bool, database: DatabaseOptions) throws {
        try runReportingFailure {
            let connection = try database.connect()
            defer { connection.close() }
            guard !(try OutboxCapture.triggers(on: connection)).isEmpty else {
                throw CommandFailure("no capture trigger found: run explore-projector migrate up")
            }
            let changed = try OutboxCapture.set(enabled: enabled, on: connection)
            let state = enabled ? "on" : "off"
            print(changed.isEmpty
                ? "outbox capture was already \(state)"
                : "outbox capture is \(state) (\(changed.count) trigger(s) switched)")
            if !enabled && !changed.isEmpty {
                print("the outbox feed will not start until capture is on again, and then needs a rebuild")
            }
        }
    }
}
