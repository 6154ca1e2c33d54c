import CRdKafka

/// An error raised by the Kafka wrapper or reported by librdkafka.
///
/// `description` is deliberately terse (code and librdkafka's reason); it never contains message payloads.
public struct KafkaError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// A stable error code. librdkafka errors use librdkafka's own error names (`rd_kafka_err2name`, for
    /// example `_TRANSPORT` or `REQUEST_TIMED_OUT`); errors raised by this wrapper use lower-camel-case names.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The stable name of the code.
        public let rawValue: String

        /// Creates a code from its stable name.
        public init(_ rawValue: String) { self.rawValue = rawValue }

        public var description: String { rawValue }

        // Raised by this wrapper.
        /// A configuration property was rejected by librdkafka.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// librdkafka could not create a client handle.
        public static let clientCreationFailed = Code("clientCreationFailed")
        /// The client was used after it was closed.
        public static let closed = Code("closed")
        /// An argument was invalid before reaching librdkafka (for example a topic name with a NUL byte).
        public static let invalidArgument = Code("invalidArgument")
        /// The mock cluster could not be created.
        public static let mockClusterCreationFailed = Code("mockClusterCreationFailed")

        // Reported by librdkafka (names from `rd_kafka_err2name`).
        /// The connection to a broker failed.
        public static let transport = Code("_TRANSPORT")
        /// No broker is reachable.
        public static let allBrokersDown = Code("_ALL_BROKERS_DOWN")
        /// A local operation timed out.
        public static let timedOut = Code("_TIMED_OUT")
        /// A produced message was not delivered within `message.timeout.ms`.
        public static let messageTimedOut = Code("_MSG_TIMED_OUT")
        /// The producer's local queue is full.
        public static let queueFull = Code("_QUEUE_FULL")
        /// The consumer reached the end of a partition (only with `enable.partition.eof`).
        public static let partitionEOF = Code("_PARTITION_EOF")
        /// The topic is unknown to the client.
        public static let unknownTopic = Code("_UNKNOWN_TOPIC")
        /// The partition is unknown to the client.
        public static let unknownPartition = Code("_UNKNOWN_PARTITION")
        /// An unrecoverable error: the client must be recreated.
        public static let fatal = Code("_FATAL")
        /// No committed offset was found.
        public static let noOffset = Code("_NO_OFFSET")
        /// The broker does not know the topic or partition.
        public static let unknownTopicOrPartition = Code("UNKNOWN_TOPIC_OR_PART")
        /// The requested offset is outside the partition's range.
        public static let offsetOutOfRange = Code("OFFSET_OUT_OF_RANGE")
        /// The partition has no leader right now.
        public static let leaderNotAvailable = Code("LEADER_NOT_AVAILABLE")
        /// The broker is not the partition's leader.
        public static let notLeaderForPartition = Code("NOT_LEADER_FOR_PARTITION")
        /// The broker timed out the request.
        public static let requestTimedOut = Code("REQUEST_TIMED_OUT")
        /// A message exceeds the broker's size limit.
        public static let messageSizeTooLarge = Code("MSG_SIZE_TOO_LARGE")
        /// The broker reported a network problem.
        public static let networkException = Code("NETWORK_EXCEPTION")
        /// The group coordinator is unavailable.
        public static let coordinatorNotAvailable = Code("COORDINATOR_NOT_AVAILABLE")
        /// The broker is not the group's coordinator.
        public static let notCoordinator = Code("NOT_COORDINATOR")
        /// The group is rebalancing.
        public static let rebalanceInProgress = Code("REBALANCE_IN_PROGRESS")
        /// Not authorized to access the topic.
        public static let topicAuthorizationFailed = Code("TOPIC_AUTHORIZATION_FAILED")
        /// Not authorized to access the group.
        public static let groupAuthorizationFailed = Code("GROUP_AUTHORIZATION_FAILED")
    }

    /// The stable code.
    public var code: Code
    /// librdkafka's numeric error code (`rd_kafka_resp_err_t`), when the error came from librdkafka.
    public var rdKafkaErrorCode: Int32?
    /// True when the client cannot continue and must be recreated.
    public var isFatal: Bool
    /// True when retrying the same operation later may succeed (broker down, leader moving, timeouts).
    public var isRetriable: Bool
    /// librdkafka's reason, or the wrapper's explanation. Never contains payloads.
    public var reason: String
    /// Where the error was raised.
    public var file: String
    /// Where the error was raised.
    public var line: Int

    /// Creates an error. Classification defaults to the code's default classification.
    public init(
        code: Code, reason: String, isFatal: Bool? = nil, isRetriable: Bool? = nil,
        rdKafkaErrorCode: Int32? = nil, file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.reason = reason
        self.rdKafkaErrorCode = rdKafkaErrorCode
        self.isFatal = isFatal ?? KafkaError.fatalCodes.contains(code)
        self.isRetriable = isRetriable ?? (!self.isFatal && KafkaError.retriableCodes.contains(code))
        self.file = file
        self.line = line
    }

    public var description: String {
        "KafkaError(\(code)\(isFatal ? ", fatal" : isRetriable ? ", retriable" : "")): \(reason)"
    }

    public var debugDescription: String {
        "KafkaError(code: \(code), rdKafkaErrorCode: \(rdKafkaErrorCode.map(String.init) ?? "nil"), "
            + "fatal: \(isFatal), retriable: \(isRetriable), reason: \(reason), at: \(file):\(line))"
    }

    /// Codes after which the client cannot continue: bad configuration, authentication or authorization.
    static let fatalCodes: Set<Code> = [
        .invalidConfiguration, .clientCreationFailed, .mockClusterCreationFailed, .fatal,
        Code("_SSL"), Code("_AUTHENTICATION"), Code("_UNSUPPORTED_FEATURE"), Code("_INCONSISTENT"),
        Code("_FENCED"), .topicAuthorizationFailed, .groupAuthorizationFailed,
        Code("CLUSTER_AUTHORIZATION_FAILED"), Code("SASL_AUTHENTICATION_FAILED"),
        Code("UNSUPPORTED_SASL_MECHANISM"), Code("TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
        Code("PRODUCER_FENCED"), Code("INVALID_PRODUCER_EPOCH"),
    ]

    /// Codes that describe a transient condition: the same operation may succeed later.
    static let retriableCodes: Set<Code> = [
        .transport, .allBrokersDown, .timedOut, .messageTimedOut, .queueFull, Code("_RESOLVE"),
        Code("_WAIT_COORD"), Code("_TIMED_OUT_QUEUE"), Code("_RETRY"), Code("_NODE_UPDATE"),
        Code("_ISR_INSUFF"), Code("_WAIT_CACHE"), Code("_IN_PROGRESS"), Code("_PREV_IN_PROGRESS"),
        .unknownTopicOrPartition, .leaderNotAvailable, .notLeaderForPartition, .requestTimedOut,
        Code("BROKER_NOT_AVAILABLE"), Code("REPLICA_NOT_AVAILABLE"), .networkException,
        Code("COORDINATOR_LOAD_IN_PROGRESS"), .coordinatorNotAvailable, .notCoordinator,
        Code("NOT_ENOUGH_REPLICAS"), Code("NOT_ENOUGH_REPLICAS_AFTER_APPEND"), .rebalanceInProgress,
        Code("KAFKA_STORAGE_ERROR"), Code("FETCH_SESSION_ID_NOT_FOUND"), Code("INVALID_FETCH_SESSION_EPOCH"),
        Code("FENCED_LEADER_EPOCH"), Code("UNKNOWN_LEADER_EPOCH"), Code("OFFSET_NOT_AVAILABLE"),
        Code("PREFERRED_LEADER_NOT_AVAILABLE"), Code("ELIGIBLE_LEADERS_NOT_AVAILABLE"),
        Code("UNSTABLE_OFFSET_COMMIT"), Code("THROTTLING_QUOTA_EXCEEDED"), Code("CONCURRENT_TRANSACTIONS"),
    ]
}

extension KafkaError.Code {
    /// The code librdkafka uses for a numeric `rd_kafka_resp_err_t` value.
    ///
    /// - Parameter rdKafkaErrorCode: a numeric `rd_kafka_resp_err_t`.
    public init(rdKafkaErrorCode: Int32) {
        self.init(String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rdKafkaErrorCode))))
    }

    /// librdkafka's numeric value for this code, or nil when the code is not a librdkafka error name.
    public var rdKafkaErrorCode: Int32? { KafkaError.numericCodesByName[rawValue] }
}

extension KafkaError {
    /// Every librdkafka error name and its numeric value, read once from `rd_kafka_get_err_descs`.
    static let numericCodesByName: [String: Int32] = {
        var descriptions: UnsafePointer<rd_kafka_err_desc>?
        var count = 0
        rd_kafka_get_err_descs(&descriptions, &count)
        var table: [String: Int32] = [:]
        guard let descriptions else { return table }
        for index in 0..<count {
            let entry = descriptions[index]
            if let name = entry.name { table[String(cString: name)] = entry.code.rawValue }
        }
        return table
    }()

    /// Wraps a librdkafka response error, classifying it.
    ///
    /// - Parameters:
    ///   - rdKafkaErrorCode: the numeric `rd_kafka_resp_err_t`.
    ///   - reason: librdkafka's reason when it gave one; `rd_kafka_err2str` otherwise.
    public init(rdKafkaErrorCode: Int32, reason: String? = nil, file: String = #fileID, line: Int = #line) {
        let err = rd_kafka_resp_err_t(rdKafkaErrorCode)
        self.init(
            code: Code(rdKafkaErrorCode: rdKafkaErrorCode),
            reason: reason ?? String(cString: rd_kafka_err2str(err)),
            rdKafkaErrorCode: rdKafkaErrorCode, file: file, line: line)
    }

    init(_ err: rd_kafka_resp_err_t, reason: String? = nil, file: String = #fileID, line: Int = #line) {
        self.init(rdKafkaErrorCode: err.rawValue, reason: reason, file: file, line: line)
    }

    /// Takes ownership of an `rd_kafka_error_t`, using librdkafka's own fatal/retriable flags, and frees it.
    init(consuming error: OpaquePointer, file: String = #fileID, line: Int = #line) {
        defer { rd_kafka_error_destroy(error) }
        let numeric = rd_kafka_error_code(error).rawValue
        let code = Code(rdKafkaErrorCode: numeric)
        let fatal = rd_kafka_error_is_fatal(error) != 0 || KafkaError.fatalCodes.contains(code)
        let retriable = !fatal
            && (rd_kafka_error_is_retriable(error) != 0 || KafkaError.retriableCodes.contains(code))
        self.init(
            code: code, reason: String(cString: rd_kafka_error_string(error)), isFatal: fatal,
            isRetriable: retriable, rdKafkaErrorCode: numeric, file: file, line: line)
    }
}

extension KafkaError: Equatable {
    /// Errors are equal when their code, classification and reason are; where they were raised is ignored.
    public static func == (lhs: KafkaError, rhs: KafkaError) -> Bool {
        lhs.code == rhs.code && lhs.isFatal == rhs.isFatal && lhs.isRetriable == rhs.isRetriable
            && lhs.reason == rhs.reason && lhs.rdKafkaErrorCode == rhs.rdKafkaErrorCode
    }
}
