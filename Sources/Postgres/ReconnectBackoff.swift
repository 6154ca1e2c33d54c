#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Delays between reconnection attempts: capped exponential growth with random jitter, reset after a success.
///
/// A pure value: it does no I/O and no sleeping, so its behaviour is tested without a server. Attempt `n`
/// (counting from 0) has the base delay `min(maximum, initial * multiplier^n)`; the delay returned is drawn
/// uniformly from `[base * (1 - jitter), base]`, so many clients that lost the same server do not reconnect
/// in lockstep.
public struct ReconnectBackoff: Sendable, Hashable {
    /// The base delay of the first attempt.
    public var initial: Duration
    /// No delay exceeds this.
    public var maximum: Duration
    /// Growth factor per attempt (≥ 1).
    public var multiplier: Double
    /// Fraction of the base delay that may be taken off at random (0…1).
    public var jitter: Double
    /// Failed attempts since the last success (or since creation).
    public private(set) var attempt: Int = 0

    /// Creates a backoff policy. Out-of-range values are clamped: `multiplier` to ≥ 1, `jitter` to 0…1, and
    /// `maximum` to at least `initial`.
    public init(
        initial: Duration = .milliseconds(100), maximum: Duration = .seconds(10), multiplier: Double = 2,
        jitter: Double = 0.2
    ) {
        let initial = max(initial, .zero)
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.multiplier = multiplier.isNaN ? 1 : max(multiplier, 1)
        self.jitter = jitter.isNaN ? 0 : min(max(jitter, 0), 1)
    }

    /// The delay before attempt `attempt` without jitter.
    public func baseDelay(forAttempt attempt: Int) -> Duration {
        let initialSeconds = Self.seconds(initial)
        let maximumSeconds = Self.seconds(maximum)
        let grown = initialSeconds * pow(multiplier, Double(max(attempt, 0)))
        // pow overflows to +infinity for large attempts; the cap handles that as well.
        guard grown.isFinite, grown < maximumSeconds else { return maximum }
        return .seconds(grown)
    }

    /// Returns the delay to wait before the next attempt and counts the attempt.
    public mutating func nextDelay<Generator: RandomNumberGenerator>(using generator: inout Generator) -> Duration {
        let base = baseDelay(forAttempt: attempt)
        attempt = attempt == Int.max ? attempt : attempt + 1
        guard jitter > 0, base > .zero else { return base }
        let factor = 1 - jitter * Double.random(in: 0...1, using: &generator)
        return base * factor
    }

    /// `nextDelay(using:)` with the system random number generator.
    public mutating func nextDelay() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return nextDelay(using: &generator)
    }

    /// Forgets past failures, after a successful connection.
    public mutating func reset() {
        attempt = 0
    }

    /// Whether reconnecting can help with `error`: connection failures and dropped connections can heal;
    /// bad URLs, wrong credentials and failing statements will fail again the same way.
    public static func isRetryable(_ error: PostgresError) -> Bool {
        error.code == .connectionFailed || error.code == .connectionClosed || error.code == .timeout
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
