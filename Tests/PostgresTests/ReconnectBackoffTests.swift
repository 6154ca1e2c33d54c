import DemoData
import Postgres
import Testing

@Suite("Reconnect backoff")
struct ReconnectBackoffTests {
    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func delaysStayWithinJitteredCappedExponential(seed: UInt64) {
        var generator = SplitMix64(seed: seed)
        for _ in 0..<200 {
            let initial = Duration.milliseconds(Int.random(in: 1...1000, using: &generator))
            let maximum = initial + .milliseconds(Int.random(in: 0...60_000, using: &generator))
            let multiplier = Double.random(in: 1...4, using: &generator)
            let jitter = Double.random(in: 0...1, using: &generator)
            var backoff = ReconnectBackoff(initial: initial, maximum: maximum, multiplier: multiplier, jitter: jitter)
            var previousBase = Duration.zero
            for attempt in 0..<80 {
                let base = backoff.baseDelay(forAttempt: attempt)
                // Reference: the closed form, computed independently in Double.
                let expected = min(Self.seconds(maximum), Self.seconds(initial) * repeatedProduct(multiplier, attempt))
                #expect(abs(Self.seconds(base) - expected) <= 1e-6 * max(1, expected))
                #expect(base >= previousBase)
                #expect(base <= maximum)
                previousBase = base
                #expect(backoff.attempt == attempt)
                let delay = backoff.nextDelay(using: &generator)
                #expect(delay <= base)
                #expect(Self.seconds(delay) >= Self.seconds(base) * (1 - jitter) - 1e-6)
            }
            backoff.reset()
            #expect(backoff.attempt == 0)
            let first = backoff.nextDelay(using: &generator)
            #expect(first <= initial)
        }
    }

    @Test func withoutJitterDelaysAreExact() {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0)
        let delays = (0..<7).map { _ in backoff.nextDelay() }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                           .seconds(1), .seconds(1), .seconds(1)])
        #expect(backoff.baseDelay(forAttempt: Int.max) == .seconds(1))
    }

    @Test func parametersAreClamped() {
        let backoff = ReconnectBackoff(initial: .seconds(2), maximum: .seconds(1), multiplier: 0.5, jitter: 7)
        #expect(backoff.maximum == .seconds(2))
        #expect(backoff.multiplier == 1)
        #expect(backoff.jitter == 1)
        #expect(backoff.baseDelay(forAttempt: 50) == .seconds(2))
    }

    @Test func onlyTransientErrorsAreRetryable() {
        #expect(ReconnectBackoff.isRetryable(PostgresError(code: .connectionFailed, message: "")))
        #expect(ReconnectBackoff.isRetryable(PostgresError(code: .connectionClosed, message: "")))
        #expect(!ReconnectBackoff.isRetryable(PostgresError(code: .authenticationFailed, message: "")))
        #expect(!ReconnectBackoff.isRetryable(PostgresError(code: .invalidURL, message: "")))
        #expect(!ReconnectBackoff.isRetryable(PostgresError(code: .server, message: "")))
    }
}

/// Repeated multiplication, the obvious reference for the backoff's growth.
func repeatedProduct(_ base: Double, _ exponent: Int) -> Double {
    var result = 1.0
    for _ in 0..<exponent { result *= base }
    return result
}
