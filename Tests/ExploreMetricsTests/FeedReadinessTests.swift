import ExploreMetrics
import Projector
import Testing

/// `/readyz` of a service with a feed: ready once bootstrapped, and for a grace after the feed disconnects.
@Suite struct FeedReadinessTests {
    static func disconnected(error: String?) -> FeedStatus {
        var status = FeedStatus()
        status.isBootstrapped = true
        status.isConnected = true
        status.isConnected = false
        status.lastError = error
        return status
    }

    @Test func readyOnceBootstrappedAndWhileConnected() {
        let readiness = FeedReadiness(disconnectedGrace: .seconds(60))
        var status = FeedStatus()
        #expect(readiness.notReadyReason(status) == "loading the cache")
        status.isBootstrapped = true
        status.isConnected = true
        #expect(status.disconnectedSince == nil)
        #expect(readiness.notReadyReason(status) == nil)
    }

    @Test func readyForTheGraceAfterADisconnectThenNotWithTheReason() throws {
        let status = Self.disconnected(error: "database: connecting failed:\nconnection refused")
        let since = try #require(status.disconnectedSince)
        let readiness = FeedReadiness(disconnectedGrace: .seconds(60))
        #expect(readiness.notReadyReason(status, now: since + .seconds(59)) == nil)
        #expect(readiness.notReadyReason(status, now: since + .seconds(61))
            == "the feed has been disconnected for 61 s: database: connecting failed: connection refused")
        // A grace of 0 is the strict policy: unready at once.
        #expect(FeedReadiness(disconnectedGrace: .zero).notReadyReason(status, now: since) != nil)
    }

    @Test func failuresWhileReconnectingKeepTheFirstDisconnectTimeAndReconnectingClearsIt() throws {
        var status = Self.disconnected(error: "first")
        let since = try #require(status.disconnectedSince)
        status.isConnected = false
        status.lastError = "second"
        #expect(status.disconnectedSince == since)
        status.isConnected = true
        #expect(status.disconnectedSince == nil)
        #expect(FeedReadiness(disconnectedGrace: .zero).notReadyReason(status) == nil)
        // No error recorded yet (a disconnect being handled): still ready.
        #expect(FeedReadiness(disconnectedGrace: .zero).notReadyReason(Self.disconnected(error: nil)) == nil)
    }
}
