import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A message delivered by `NOTIFY` to a channel this connection listens on.
public struct PostgresNotification: Sendable, Hashable {
    /// The channel name.
    public var channel: String
    /// The payload (empty when none was given).
    public var payload: String
    /// The process ID of the notifying server backend.
    public var processID: Int32

    /// Creates a notification.
    public init(channel: String, payload: String, processID: Int32) {
        self.channel = channel
        self.payload = payload
        self.processID = processID
    }
}

extension PostgresConnection {
    /// Starts listening on `channel` (validated and quoted as an identifier, so any name is safe).
    /// - Throws: `.invalidIdentifier` for an empty or over-long name; `.server` if LISTEN fails.
    public func listen(_ channel: String) throws(PostgresError) {
        try executeScript("LISTEN " + PostgresIdentifier.quoted(channel))
    }

    /// Stops listening on `channel`.
    public func unlisten(_ channel: String) throws(PostgresError) {
        try executeScript("UNLISTEN " + PostgresIdentifier.quoted(channel))
    }

    /// Returns the notifications already received, or waits up to `timeout` for at least one.
    ///
    /// Waits with `poll(2)` on the connection's socket (`PQsocket`), then reads with `PQconsumeInput` and
    /// `PQnotifies`. Returns an empty array when the timeout passes without a notification.
    /// - Throws: `.connectionClosed` when the connection breaks while waiting.
    public func waitForNotifications(timeout: Duration) throws(PostgresError) -> [PostgresNotification] {
        let handle = try liveHandle()
        let clock = ContinuousClock()
        // Clamped so that adding the timeout to the current instant cannot overflow.
        let deadline = clock.now.advanced(by: min(max(timeout, .zero), .seconds(365 * 86_400)))
        while true {
            guard PQconsumeInput(handle) == 1 else {
                var error = connectionError(handle, sql: nil)
                error.code = .connectionClosed
                throw error
            }
            let received = drainNotifications(handle)
            if !received.isEmpty { return received }

            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero { return [] }
            let socket = PQsocket(handle)
            guard socket >= 0 else {
                throw PostgresError(code: .connectionClosed, message: "connection has no socket")
            }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: Self.milliseconds(rounding: remaining))
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 && errno != EINTR {
                throw PostgresError(code: .connectionClosed, message: "poll failed with errno \(errno)")
            }
            // ready == 0 (timed out) loops once more and returns [] after a last non-blocking check.
        }
    }

    private func drainNotifications(_ handle: OpaquePointer) -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            defer { PQfreemem(notify) }
            received.append(PostgresNotification(
                channel: String(cString: notify.pointee.relname),
                payload: notify.pointee.extra.map { String(cString: $0) } ?? "",
                processID: notify.pointee.be_pid))
        }
        return received
    }

    /// Rounds up, so a wait never ends before the deadline and then spins.
    private static func milliseconds(rounding duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let perMillisecond: Int64 = 1_000_000_000_000_000
        return seconds * 1000 + (attoseconds + perMillisecond - 1) / perMillisecond
    }
}
