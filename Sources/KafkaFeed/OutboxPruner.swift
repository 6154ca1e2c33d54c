import Foundation
import Logging
import Postgres
import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Deletes applied-by-nobody outbox entries while the Kafka feed runs (see
/// ``KafkaOffsetStore/pruneOutbox(on:limit:)``), on its own thread and connection so that large deletes never
/// delay a batch. Failures are logged and retried at the next interval: a late prune costs disk, not data.
final class OutboxPruner: @unchecked Sendable {
    private let postgres: PostgresConfiguration
    private let interval: Duration
    private let logger: Logger
    private let lock = NSLock()
    private var stopRequested = false
    private let finished = DispatchSemaphore(value: 0)

    init(postgres: PostgresConfiguration, interval: Duration, logger: Logger) {
        self.postgres = postgres
        self.interval = interval
        self.logger = logger
    }

    /// Starts the pruning thread.
    func start() {
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "explore.outbox-pruner"
        thread.start()
    }

    /// Stops after the delete in flight and waits for the thread.
    func stop() {
        lock.withLock { stopRequested = true }
        finished.wait()
    }

    private var shouldStop: Bool { lock.withLock { stopRequested } }

    private func run() {
        var connection: PostgresConnection?
        defer { connection?.close() }
        while !shouldStop {
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: interval)
            while !shouldStop && clock.now < deadline { usleep(20_000) }
            guard !shouldStop else { return }
            do {
                let current = try connection ?? PostgresConnection.connect(postgres)
                connection = current
                var pruned = 0
                while !shouldStop {
                    let deleted = try KafkaOffsetStore.pruneOutbox(on: current)
                    pruned += deleted
                    if deleted < 10_000 { break }
                }
                if pruned > 0 { logger.debug("pruned the outbox", metadata: ["entries": "\(pruned)"]) }
            } catch {
                logger.warning("pruning the outbox failed; retrying later", metadata: ["error": "\(error)"])
                connection?.close()
                connection = nil
            }
        }
    }
}
