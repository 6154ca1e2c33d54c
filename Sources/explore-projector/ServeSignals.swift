import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT and SIGTERM for `serve`, installed before anything starts.
///
/// Before the service is up (building the projection, loading the cache), a signal ends the process at once with
/// status 0: nothing is applied yet, and building the projection runs in one transaction that PostgreSQL rolls
/// back when the connection drops, so nothing is left half done. Once the service is up, a signal starts the
/// graceful stop: `/readyz` turns 503, the projector finishes the batch in flight, the server drains.
final class ServeSignals: @unchecked Sendable {
    // Safe: `stop` is read and written only while holding `lock`; `sources` is written once in `init`.
    private let lock = NSLock()
    private var stop: (@Sendable () -> Void)?
    private var sources: [any DispatchSourceSignal] = []

    /// Installs the handlers; `operations` (if any) turns unready on the first signal.
    init(operations: ServeOperations?) {
        sources = onTerminationSignal { [self] name in
            operations?.markStopping()
            guard let stop = lock.withLock({ self.stop }) else {
                ServeLogging.logger.info("received \(name) while starting; exiting (nothing applied yet)")
                print("stopped")
                fflush(nil)
                exit(0)
            }
            ServeLogging.logger.info("received \(name); stopping gracefully (finishing the batch in flight)")
            stop()
        }
    }

    /// The service is up: from now on a signal calls `stop`.
    func started(stop: @escaping @Sendable () -> Void) {
        lock.withLock { self.stop = stop }
    }
}
