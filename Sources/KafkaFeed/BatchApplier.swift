import Foundation
import Kafka
import Postgres

/// Runs batch transactions one at a time on a thread of its own (a serial dispatch queue, never the
/// cooperative pool), so the feed's thread keeps polling and decoding meanwhile. At most one batch is in flight;
/// after a failure every later batch is skipped and the failure waits in ``failure`` for the feed's thread.
final class BatchApplier: @unchecked Sendable {
    // Safe: `busy` and `storedFailure` are only touched under `lock`; `connection` is only used by the queue's
    // blocks, which run one at a time, and by nobody else while a session follows the feed.
    private let connection: PostgresConnection
    private let queue = DispatchQueue(label: "explore.kafka-feed.apply")
    private let slot = DispatchSemaphore(value: 1)
    private let lock = NSLock()
    private var busy = false
    private var storedFailure: (any Error)?

    init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// No batch is in flight.
    var isIdle: Bool { lock.withLock { !busy } }

    /// The failure of a batch, once one failed.
    var failure: (any Error)? { lock.withLock { storedFailure } }

    /// Runs `work` after the batch in flight; blocks while one is in flight.
    func submit(_ work: @escaping @Sendable (PostgresConnection) throws -> Void) {
        slot.wait()
        lock.withLock { busy = true }
        queue.async { [self] in
            defer {
                lock.withLock { busy = false }
                slot.signal()
            }
            guard failure == nil else { return }
            do {
                try work(connection)
            } catch {
                lock.withLock { storedFailure = error }
            }
        }
    }

    /// Runs `work` on the applier's thread after the batch in flight and waits for it: nothing else uses the
    /// connection meanwhile (the feed's thread is blocked here and submits nothing). Skipped after a failure.
    func perform(_ work: (PostgresConnection) -> Void) {
        slot.wait()
        defer { slot.signal() }
        guard failure == nil else { return }
        queue.sync { work(connection) }
    }

    /// Waits until no batch is in flight.
    func drain() {
        slot.wait()
        slot.signal()
    }
}

/// The next offset per partition as stored by the last committed batch; shared by the feed's thread
/// (assignment, lag) and the applier's (after each commit).
final class CommittedOffsets: @unchecked Sendable {
    // Safe: `stored` is only touched under `lock`.
    private let lock = NSLock()
    private var stored: [Int32: Int64]

    init(_ offsets: [Int32: Int64]) { stored = offsets }

    var offsets: [Int32: Int64] { lock.withLock { stored } }

    func record(_ positions: [KafkaTopicPartition: Int64]) {
        lock.withLock {
            for (partition, offset) in positions { stored[partition.partition] = max(stored[partition.partition] ?? 0, offset) }
        }
    }
}
