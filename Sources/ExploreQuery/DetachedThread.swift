#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A detached thread running one closure: for blocking work (libpq calls, whole-table loads) that must never
/// occupy the cooperative thread pool.
public final class DetachedThread: @unchecked Sendable {
    // Safe: `body` is immutable and only called once, on the new thread.
    private let body: @Sendable () -> Void

    /// Creates the thread; nothing runs until ``start()``.
    public init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    /// Starts the thread; it keeps itself alive until `body` returns.
    public func start() {
        let unmanaged = Unmanaged.passRetained(self)
        var handle = pthread_t()
        let created = pthread_create(&handle, nil, { argument in
            Unmanaged<DetachedThread>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, unmanaged.toOpaque())
        precondition(created == 0, "pthread_create failed with \(created)")
        pthread_detach(handle)
    }
}
