#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Applies committed batches to the cache on a thread of its own, one at a time and in commit order, while the
/// driver reads and commits the next batch.
///
/// Why: a batch's cache step (a few microseconds per row, on the projector's cores) and the next batch's outbox
/// read and transaction (on PostgreSQL's) need not wait for each other. While a backlog drains, each batch's
/// cache step used to add 10-15 % to its time. At most one batch is handed over at a time, so the cache lags the
/// table by one batch at most and a slow cache holds the driver back instead of piling up batches.
final class CacheApplier: @unchecked Sendable {
    private let monitor = Monitor()
    /// The work handed over and not started yet.
    private var next: (@Sendable () -> Void)?
    /// Whether the thread is running a piece of work.
    private var busy = false
    private var finishing = false
    private var thread: pthread_t?

    init() {
        let unmanaged = Unmanaged.passRetained(self)
        var handle = pthread_t()
        let created = pthread_create(&handle, nil, { argument in
            Unmanaged<CacheApplier>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, unmanaged.toOpaque())
        precondition(created == 0, "pthread_create failed with \(created)")
        thread = handle
    }

    /// Hands `work` over once the previous work is done; returns without waiting for `work` itself.
    func submit(_ work: @escaping @Sendable () -> Void) {
        monitor.withLock {
            while next != nil || busy { monitor.wait(milliseconds: 100) }
            next = work
            monitor.broadcast()
        }
    }

    /// Waits until everything handed over is done.
    func waitUntilIdle() {
        monitor.withLock {
            while next != nil || busy { monitor.wait(milliseconds: 100) }
        }
    }

    /// Finishes the work handed over, then ends the thread. Call once, from the thread that submits.
    func finish() {
        monitor.withLock {
            finishing = true
            monitor.broadcast()
        }
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func run() {
        while true {
            let work: (@Sendable () -> Void)? = monitor.withLock {
                while next == nil && !finishing { monitor.wait(milliseconds: 100) }
                defer { next = nil }
                busy = next != nil
                return next
            }
            guard let work else { return }
            work()
            monitor.withLock {
                busy = false
                monitor.broadcast()
            }
        }
    }
}
