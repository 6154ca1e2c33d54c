import CRdKafka

/// A Kafka protocol request type, for injecting errors into the mock cluster.
public struct KafkaAPIKey: Sendable, Hashable {
    /// The Kafka protocol's ApiKey.
    public var rawValue: Int16

    /// Creates a key from its protocol value.
    public init(_ rawValue: Int16) { self.rawValue = rawValue }

    /// Produce.
    public static let produce = KafkaAPIKey(0)
    /// Fetch.
    public static let fetch = KafkaAPIKey(1)
    /// ListOffsets.
    public static let listOffsets = KafkaAPIKey(2)
    /// Metadata.
    public static let metadata = KafkaAPIKey(3)
    /// OffsetCommit.
    public static let offsetCommit = KafkaAPIKey(8)
    /// OffsetFetch.
    public static let offsetFetch = KafkaAPIKey(9)
    /// FindCoordinator.
    public static let findCoordinator = KafkaAPIKey(10)
    /// JoinGroup.
    public static let joinGroup = KafkaAPIKey(11)
    /// Heartbeat.
    public static let heartbeat = KafkaAPIKey(12)
    /// SyncGroup.
    public static let syncGroup = KafkaAPIKey(14)
}

/// librdkafka's in-process mock Kafka cluster (`rdkafka_mock.h`): brokers listening on 127.0.0.1 ephemeral
/// ports, speaking enough of the protocol for producers, consumers and groups. For tests and development.
///
/// The cluster runs on librdkafka's own threads; every mock call is posted to them, which makes the calls
/// thread-safe and this class `@unchecked Sendable`.
public final class KafkaMockCluster: @unchecked Sendable {
    /// The handle the cluster lives in; destroyed after the cluster.
    private let client: RDKafkaClient
    private let cluster: OpaquePointer
    /// The broker ids, 1 through the broker count.
    public let brokerIDs: ClosedRange<Int32>

    /// Starts a cluster.
    ///
    /// - Parameter brokers: the number of brokers (at least 1).
    /// - Throws: `KafkaError` `.mockClusterCreationFailed`.
    public init(brokers: Int = 1) throws(KafkaError) {
        guard brokers >= 1, brokers <= 64 else {
            throw KafkaError(code: .invalidArgument, reason: "broker count must be 1...64, got \(brokers)")
        }
        client = try RDKafkaClient.make(
            kind: .producer, configuration: KafkaConfiguration(["log_level": "3"]),
            callbacks: RDKafkaCallbacks(onError: { _ in }))
        guard let cluster = rd_kafka_mock_cluster_new(client.handle, Int32(brokers)) else {
            throw KafkaError(code: .mockClusterCreationFailed, reason: "rd_kafka_mock_cluster_new failed")
        }
        self.cluster = cluster
        brokerIDs = 1...Int32(brokers)
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// The comma-separated `host:port` list to use as `bootstrap.servers`.
    public var bootstrapServers: String {
        String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    /// Creates a topic (topics are also auto-created on first use with the cluster's default partition count).
    ///
    /// - Throws: `KafkaError` when the cluster rejects the topic.
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        guard partitions >= 1, replicationFactor >= 1, !name.isEmpty, !name.utf8.contains(0) else {
            throw KafkaError(code: .invalidArgument, reason: "invalid topic \(name) with \(partitions) partitions")
        }
        try check(rd_kafka_mock_topic_create(
            cluster, name, Int32(clamping: partitions), Int32(clamping: replicationFactor)))
    }

    /// Takes a broker down: its connections are closed and new ones refused until ``setBrokerUp(_:)``.
    ///
    /// - Throws: `KafkaError` for an unknown broker id.
    public func setBrokerDown(_ brokerID: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_down(cluster, brokerID))
    }

    /// Brings a broker back up.
    ///
    /// - Throws: `KafkaError` for an unknown broker id.
    public func setBrokerUp(_ brokerID: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_up(cluster, brokerID))
    }

    /// Makes the next requests of type `api` (to any broker) fail, one error per request, in order.
    public func pushRequestErrors(_ api: KafkaAPIKey, _ errors: [KafkaError.Code]) throws(KafkaError) {
        var numeric: [rd_kafka_resp_err_t] = []
        for code in errors {
            guard let value = code.rdKafkaErrorCode else {
                throw KafkaError(code: .invalidArgument, reason: "\(code) is not a librdkafka error code")
            }
            numeric.append(rd_kafka_resp_err_t(value))
        }
        rd_kafka_mock_push_request_errors_array(cluster, api.rawValue, numeric.count, numeric)
    }

    /// Removes errors queued with ``pushRequestErrors(_:_:)`` for `api`.
    public func clearRequestErrors(_ api: KafkaAPIKey) {
        rd_kafka_mock_clear_request_errors(cluster, api.rawValue)
    }

    /// Makes metadata requests report `code` for `topic` (nil clears it), for example `.unknownTopicOrPartition`.
    public func setTopicError(_ topic: String, _ code: KafkaError.Code?) throws(KafkaError) {
        var value: Int32 = 0
        if let code {
            guard let numeric = code.rdKafkaErrorCode else {
                throw KafkaError(code: .invalidArgument, reason: "\(code) is not a librdkafka error code")
            }
            value = numeric
        }
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(value))
    }

    /// Moves a partition's leadership to `brokerID`.
    ///
    /// - Throws: `KafkaError` for an unknown topic, partition or broker.
    public func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerID))
    }

    private func check(_ err: rd_kafka_resp_err_t) throws(KafkaError) {
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }
}
