/// One record read from a Kafka partition.
public struct KafkaMessage: Sendable, Hashable {
    /// The topic the record was read from.
    public var topic: String
    /// The partition the record was read from.
    public var partition: Int32
    /// The record's offset in its partition.
    public var offset: Int64
    /// The record's key, or nil when it has none.
    public var key: [UInt8]?
    /// The record's value, or nil for a tombstone (a record with a null value).
    public var value: [UInt8]?
    /// The record's timestamp in milliseconds since the Unix epoch, when the broker provided one.
    public var timestampMilliseconds: Int64?
    /// The record's headers, in order.
    public var headers: [KafkaHeader]

    /// Creates a message (tests and in-memory feeds build them directly).
    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?,
        timestampMilliseconds: Int64? = nil, headers: [KafkaHeader] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestampMilliseconds = timestampMilliseconds
        self.headers = headers
    }

    /// The value of the first header named `name`, if any.
    public func header(_ name: String) -> [UInt8]? {
        headers.first { $0.name == name }?.value ?? nil
    }

    /// True when the record has a null value (Kafka's deletion marker for compacted topics).
    public var isTombstone: Bool { value == nil }

    /// The position a consumer stores or commits after processing this message: the next offset.
    public var nextPosition: KafkaTopicPartitionOffset {
        KafkaTopicPartitionOffset(topic: topic, partition: partition, offset: KafkaOffset(offset + 1))
    }
}

/// A record to produce.
public struct KafkaProducerRecord: Sendable, Hashable {
    /// The destination topic.
    public var topic: String
    /// The destination partition, or nil to let librdkafka's partitioner choose from the key.
    public var partition: Int32?
    /// The key, or nil.
    public var key: [UInt8]?
    /// The value, or nil to produce a tombstone.
    public var value: [UInt8]?
    /// Headers to attach, in order.
    public var headers: [KafkaHeader]

    /// Creates a record.
    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// One record header: a name and an optional value.
public struct KafkaHeader: Sendable, Hashable {
    /// The header's name.
    public var name: String
    /// The header's value; nil for a header without one.
    public var value: [UInt8]?

    /// Creates a header.
    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// Creates a header with a UTF-8 text value.
    public init(name: String, text: String) {
        self.init(name: name, value: Array(text.utf8))
    }
}

/// Where a produced record landed.
public struct KafkaDeliveryReport: Sendable, Hashable {
    /// The topic.
    public var topic: String
    /// The partition.
    public var partition: Int32
    /// The offset the broker assigned.
    public var offset: Int64

    /// Creates a report.
    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

/// An offset in a partition: an absolute position (>= 0) or one of the logical positions.
public struct KafkaOffset: Sendable, Hashable, CustomStringConvertible {
    /// librdkafka's value: >= 0 absolute, negative for the logical positions.
    public var rawValue: Int64

    /// Creates an offset from librdkafka's value.
    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    /// The oldest record still in the partition (`RD_KAFKA_OFFSET_BEGINNING`).
    public static let beginning = KafkaOffset(-2)
    /// The next record produced after assignment (`RD_KAFKA_OFFSET_END`).
    public static let end = KafkaOffset(-1)
    /// The group's committed offset, falling back to `auto.offset.reset` (`RD_KAFKA_OFFSET_STORED`).
    public static let stored = KafkaOffset(-1000)
    /// No offset (`RD_KAFKA_OFFSET_INVALID`), as returned for partitions without a committed offset.
    public static let invalid = KafkaOffset(-1001)

    /// True for an absolute position.
    public var isAbsolute: Bool { rawValue >= 0 }

    public var description: String {
        switch self {
        case .beginning: "beginning"
        case .end: "end"
        case .stored: "stored"
        case .invalid: "invalid"
        default: String(rawValue)
        }
    }
}

/// A topic and partition.
public struct KafkaTopicPartition: Sendable, Hashable {
    /// The topic.
    public var topic: String
    /// The partition.
    public var partition: Int32

    /// Creates a topic-partition.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
}

/// A topic, partition and offset: a starting point for assignment, or a position to store or commit.
public struct KafkaTopicPartitionOffset: Sendable, Hashable {
    /// The topic.
    public var topic: String
    /// The partition.
    public var partition: Int32
    /// The offset.
    public var offset: KafkaOffset

    /// Creates a topic-partition-offset.
    public init(topic: String, partition: Int32, offset: KafkaOffset) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    /// The topic-partition without the offset.
    public var topicPartition: KafkaTopicPartition { KafkaTopicPartition(topic: topic, partition: partition) }
}
