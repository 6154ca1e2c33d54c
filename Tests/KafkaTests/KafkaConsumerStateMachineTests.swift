@testable import Kafka
import DemoData
import Testing

@Suite("KafkaConsumerStateMachine")
struct KafkaConsumerStateMachineTests {
    let retriable = KafkaError(rdKafkaErrorCode: -195, reason: "broker down")
    let fatal = KafkaError(rdKafkaErrorCode: -150, reason: "fenced")

    @Test func runningPollsUntilCancelled() {
        let machine = KafkaConsumerStateMachine()
        #expect(machine.nextPollAction(isCancelled: false) == .poll)
        #expect(machine.nextPollAction(isCancelled: true) == .finish)
    }

    @Test func retriableErrorsAreReportedAndPollingContinues() {
        var machine = KafkaConsumerStateMachine()
        #expect(machine.errorReported(retriable) == .report)
        #expect(machine.nextPollAction(isCancelled: false) == .poll)
    }

    @Test func aFatalErrorFailsEveryLaterPollAndIsReportedOnce() {
        var machine = KafkaConsumerStateMachine()
        #expect(machine.errorReported(fatal) == .reportAndFail(fatal))
        #expect(machine.nextPollAction(isCancelled: false) == .fail(fatal))
        #expect(machine.nextPollAction(isCancelled: true) == .fail(fatal))
        #expect(machine.errorReported(retriable) == .ignore)
        #expect(machine.errorReported(fatal) == .ignore)
        #expect(machine.closeRequested() == .closeHandle)
        #expect(machine.nextPollAction(isCancelled: false) == .finish)
    }

    @Test func closeIsIdempotentAndEndsPolling() {
        var machine = KafkaConsumerStateMachine()
        #expect(machine.closeRequested() == .closeHandle)
        #expect(machine.closeRequested() == .none)
        #expect(machine.nextPollAction(isCancelled: false) == .finish)
        #expect(machine.errorReported(fatal) == .ignore)
        #expect(machine.state == .closed)
    }

    /// Any sequence of events: once closed nothing polls; once failed only close changes the state; the
    /// handle is closed at most once.
    @Test func randomEventSequencesKeepTheInvariants() {
        var generator = SplitMix64(seed: 0xC0FFEE)
        for _ in 0..<500 {
            var machine = KafkaConsumerStateMachine()
            var closes = 0
            var failedWith: KafkaError?
            for _ in 0..<20 {
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    if machine.closeRequested() == .closeHandle { closes += 1 }
                case 1:
                    if case .reportAndFail(let error) = machine.errorReported(fatal) { failedWith = error }
                case 2:
                    _ = machine.errorReported(retriable)
                default:
                    let action = machine.nextPollAction(isCancelled: Bool.random(using: &generator))
                    if closes > 0 { #expect(action == .finish) }
                    if closes == 0, let failedWith { #expect(action == .fail(failedWith)) }
                }
            }
            #expect(closes <= 1)
        }
    }
}

