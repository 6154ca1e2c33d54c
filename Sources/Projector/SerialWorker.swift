import ExploreQuery

/// Runs work on a thread of its own, one piece at a time and in the order handed over (by one thread, or by threads
/// whose hand-overs are ordered among themselves); at most one piece waits, so a slow worker holds the submitters
/// back instead of piling work up.
///
/// The driver keeps two kinds: one applies committed batches to the cache while the driver reads and commits
/// the next batch, and one per extra apply connection runs a part of a split batch (both are blocking work that
/// must stay off the cooperative pool).
final class SerialWorker: @unchecked Sendable {
    private let monitor = Monitor()
    /// The work handed over and not started yet.
    private var next: (@Sendable () -> Void)?
    /// Whether the thread is running a piece of work.
    private var busy = false
    private var finishing = false
    private var exited = false

    init() {
        DetachedThread { [self] in run() }.start()
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
            while !exited { monitor.wait(milliseconds: 100) }
        }
    }

    private func run() {
        while let work = take() {
            work()
            monitor.withLock {
                busy = false
                monitor.broadcast()
            }
        }
    }

    /// The next work, or nil (and the thread marked as exited) once finishing with nothing left.
    private func take() -> (@Sendable () -> Void)? {
        monitor.withLock {
            while next == nil && !finishing { monitor.wait(milliseconds: 100) }
            guard let work = next else {
                exited = true
                monitor.broadcast()
                return nil
            }
            next = nil
            busy = true
            return work
        }
    }
}
