import Kafka

/// Where the Kafka feed reads from, and how.
public struct KafkaFeedConfiguration: Sendable, Hashable {
    /// Where a partition without a stored offset starts.
    public enum StartPosition: String, Sendable, Hashable {
        /// The oldest record still in the partition: safe, since applying an old event only recomputes a
        /// listing from the base tables (the default).
        case beginning
        /// Only records produced after the feed starts (skips history the initial build already covers, but
        /// loses events produced between the build and the first assignment).
        case end
    }

    /// `bootstrap.servers`: comma-separated `host:port` list.
    public var brokers: String
    /// The topic carrying the change events (Debezium or minimal envelopes), all partitions consumed.
    public var topic: String
    /// The consumer group the feed commits its offsets to, for lag tooling (partitions are assigned manually,
    /// so the group never rebalances; the feed resumes from the offsets stored with the projection).
    public var group: String
    /// Where rejected events are produced, with headers naming the reason and the original position; nil: only
    /// counted and logged.
    public var deadLetterTopic: String?
    /// Extra librdkafka properties for the consumer and the dead-letter producer (e.g. `security.protocol`,
    /// `fetch.wait.max.ms`). The ones the feed owns (see ``reservedProperties``) are refused.
    public var properties: [String: String]
    /// Where partitions without a stored offset start.
    public var startPosition: StartPosition
    /// How often the feed re-reads the topic's metadata: notices new partitions, reports reconnection and lag.
    public var metadataInterval: Duration
    /// How often the feed prunes the outbox the base-table triggers keep filling (see
    /// ``KafkaOffsetStore/pruneOutbox(on:limit:)``); nil never prunes.
    public var outboxPruneInterval: Duration?
    /// How long a batch holding rejected events waits for their dead-letter delivery before it commits anyway.
    public var deadLetterFlushTimeout: Duration

    /// Properties the feed sets itself; passing them through ``properties`` is an error.
    public static let reservedProperties: Set<String> = [
        "bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit", "enable.auto.offset.store",
    ]

    /// Creates a configuration.
    public init(
        brokers: String, topic: String, group: String = "explore-projector", deadLetterTopic: String? = nil,
        properties: [String: String] = [:], startPosition: StartPosition = .beginning,
        metadataInterval: Duration = .seconds(2), outboxPruneInterval: Duration? = .seconds(10),
        deadLetterFlushTimeout: Duration = .seconds(5)
    ) {
        self.brokers = brokers
        self.topic = topic
        self.group = group
        self.deadLetterTopic = deadLetterTopic
        self.properties = properties
        self.startPosition = startPosition
        self.metadataInterval = metadataInterval
        self.outboxPruneInterval = outboxPruneInterval
        self.deadLetterFlushTimeout = deadLetterFlushTimeout
    }

    /// Checks the settings a broker would only reject later, or never.
    /// - Throws: ``KafkaFeedConfigurationError`` naming the setting.
    public func validate() throws(KafkaFeedConfigurationError) {
        let servers = brokers.split(separator: ",", omittingEmptySubsequences: false)
        guard !brokers.isEmpty, servers.allSatisfy({ server in !server.allSatisfy { $0 == " " } }) else {
            throw KafkaFeedConfigurationError("the Kafka brokers must be a comma-separated host:port list")
        }
        try Self.checkTopic(topic, what: "topic")
        guard !group.isEmpty else { throw KafkaFeedConfigurationError("the consumer group must not be empty") }
        if let deadLetterTopic {
            try Self.checkTopic(deadLetterTopic, what: "dead-letter topic")
            guard deadLetterTopic != topic else {
                throw KafkaFeedConfigurationError("the dead-letter topic must differ from the feed's topic")
            }
        }
        for name in properties.keys.sorted() where Self.reservedProperties.contains(name) {
            throw KafkaFeedConfigurationError("the Kafka property \(name) is set by the feed itself"
                + " (use the brokers / group settings instead)")
        }
    }

    /// Kafka's topic name rules: 1...249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    private static func checkTopic(_ name: String, what: String) throws(KafkaFeedConfigurationError) {
        let legal = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
        guard !name.isEmpty, name.utf8.count <= 249, legal, name != ".", name != ".." else {
            throw KafkaFeedConfigurationError(
                "the \(what) '\(name.prefix(60))' is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")
        }
    }

    /// The consumer's librdkafka properties.
    func consumerProperties() -> KafkaConfiguration {
        var configuration = KafkaConfiguration(properties)
        configuration.bootstrapServers = brokers
        configuration.groupID = group
        configuration.enableAutoCommit = false
        configuration.enableAutoOffsetStore = false
        if configuration["auto.offset.reset"] == nil { configuration.autoOffsetReset = .earliest }
        if configuration.clientID == nil { configuration.clientID = "explore-projector" }
        return configuration
    }

    /// The dead-letter producer's librdkafka properties (the consumer-only ones left out).
    func producerProperties() -> KafkaConfiguration {
        var configuration = KafkaConfiguration(properties.filter { !Self.consumerOnly.contains($0.key) })
        configuration.bootstrapServers = brokers
        if configuration.clientID == nil { configuration.clientID = "explore-projector-dead-letters" }
        return configuration
    }

    private static let consumerOnly: Set<String> = [
        "auto.offset.reset", "fetch.wait.max.ms", "fetch.min.bytes", "fetch.max.bytes", "fetch.error.backoff.ms",
        "max.partition.fetch.bytes", "fetch.message.max.bytes", "queued.min.messages", "queued.max.messages.kbytes",
        "session.timeout.ms", "heartbeat.interval.ms", "isolation.level", "enable.partition.eof",
        "check.crcs", "auto.commit.interval.ms", "partition.assignment.strategy", "group.instance.id",
    ]
}

/// A Kafka feed setting is invalid; the message names it.
public struct KafkaFeedConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// One line naming the setting and the fix.
    public var message: String

    /// Creates an error.
    public init(_ message: String) { self.message = message }

    /// The message.
    public var description: String { message }
}
