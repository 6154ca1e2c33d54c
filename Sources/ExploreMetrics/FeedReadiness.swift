public import Projector

/// What `/readyz` says about a service that serves a feed's cache: ready once the cache is bootstrapped, and
/// still ready for ``disconnectedGrace`` after the feed loses its source.
///
/// Why a grace: every replica follows the same database, so a database restart or fail-over disconnects all of
/// them at once. Turning them all unready would take search down entirely while each of them could go on
/// answering from its cache, a few seconds stale. Past the grace the replica says why it is not ready, so a load
/// balancer stops sending it searches while the cache ages; the lag shows meanwhile in `/metrics`.
public struct FeedReadiness: Sendable {
    /// How long after the feed disconnects the service stays ready (`.zero`: not ready at once).
    public var disconnectedGrace: Duration

    public init(disconnectedGrace: Duration) {
        self.disconnectedGrace = disconnectedGrace
    }

    /// Why the service is not ready, or nil when it is.
    public func notReadyReason(_ status: FeedStatus, now: ContinuousClock.Instant = .now) -> String? {
        guard status.isBootstrapped else { return "loading the cache" }
        guard !status.isConnected, let error = status.lastError else { return nil }
        let down = status.disconnectedSince.map { $0.duration(to: now) } ?? .zero
        guard down >= disconnectedGrace else { return nil }
        let seconds = down.components.seconds
        return "the feed has been disconnected for \(seconds) s: "
            + error.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
