/// The consumer's lifecycle as a pure state machine: every event returns the action the consumer performs.
/// No I/O here, so every transition is unit-tested without a broker.
///
/// ```
///   running ──close──▶ closed
///      │                 ▲
///      └──fatal──▶ failed┘ (close still releases the handle)
/// ```
struct KafkaConsumerStateMachine: Sendable {
    enum State: Sendable, Equatable {
        case running
        case failed(KafkaError)
        case closed
    }

    private(set) var state: State = .running

    /// What to do before the next `rd_kafka_consumer_poll`.
    enum PollAction: Equatable {
        /// Poll the handle.
        case poll
        /// End the sequence (closed, or the iterating task was cancelled).
        case finish
        /// End the sequence with the fatal error.
        case fail(KafkaError)
    }

    func nextPollAction(isCancelled: Bool) -> PollAction {
        switch state {
        case .failed(let error): .fail(error)
        case .closed: .finish
        case .running: isCancelled ? .finish : .poll
        }
    }

    /// What to do with an error, from a consume result or librdkafka's error callback.
    enum ErrorAction: Equatable {
        /// Publish it on the error stream and keep going.
        case report
        /// Publish it and end the sequence with it: the handle is unusable.
        case reportAndFail(KafkaError)
        /// The consumer is already closed or failed; drop it.
        case ignore
    }

    mutating func errorReported(_ error: KafkaError) -> ErrorAction {
        switch state {
        case .running:
            guard error.isFatal else { return .report }
            state = .failed(error)
            return .reportAndFail(error)
        case .failed, .closed:
            return .ignore
        }
    }

    /// What to do when the owner asks to close.
    enum CloseAction: Equatable {
        /// Run `rd_kafka_consumer_close` (leave the group) and finish the error stream.
        case closeHandle
        /// Already closed: nothing to do.
        case none
    }

    mutating func closeRequested() -> CloseAction {
        switch state {
        case .running, .failed:
            state = .closed
            return .closeHandle
        case .closed:
            return .none
        }
    }
}
