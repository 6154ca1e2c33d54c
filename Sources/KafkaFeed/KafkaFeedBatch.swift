public import Kafka
public import Projector

/// Accumulates the keys of consumed messages and the position reached in each partition, by the same window
/// and size rules as the outbox feed's ``ChangeBatcher``: a key changed many times while the batch is open is
/// recomputed once.
///
/// Pure: the caller passes the current time (any monotonic nanosecond count) and performs the returned action.
public struct KafkaFeedBatch: Sendable {
    /// The configuration (window, maximum distinct keys), shared with the outbox feed.
    public let configuration: ChangeBatcher.Configuration
    private var listingIDs: Set<Int64> = []
    private var locationIDs: Set<Int64> = []
    private var positions: [KafkaTopicPartition: Int64] = [:]
    private var events = 0
    private var applicableEvents = 0
    private var deadline: UInt64?
    private var newestTimestamp: Int64?

    /// What a closed batch holds.
    public struct Contents: Sendable, Hashable {
        /// Listing ids to recompute, ascending and distinct.
        public var listingIDs: [Int64]
        /// Locations whose listings must be recomputed, ascending and distinct.
        public var locationIDs: [Int64]
        /// Per partition, the next offset to consume once the batch is applied.
        public var nextOffsets: [KafkaTopicPartition: Int64]
        /// Messages consumed (applied, ignored and rejected).
        public var events: Int
        /// Messages that named keys to recompute.
        public var applicableEvents: Int
        /// The newest producer timestamp among the messages, in milliseconds since the Unix epoch.
        public var newestTimestampMilliseconds: Int64?

        /// Whether the batch consumed nothing.
        public var isEmpty: Bool { events == 0 }
    }

    /// Creates an empty batch.
    public init(configuration: ChangeBatcher.Configuration = .init()) {
        self.configuration = configuration
    }

    /// Distinct keys pending.
    public var pendingKeys: Int { listingIDs.count + locationIDs.count }
    /// Messages pending.
    public var pendingEvents: Int { events }

    /// Adds a message routed at `now`; returns when to flush.
    public mutating func add(_ message: KafkaMessage, routed: RoutedEvent, now: UInt64) -> ChangeBatcher.Action {
        let partition = KafkaTopicPartition(topic: message.topic, partition: message.partition)
        positions[partition] = max(positions[partition] ?? 0, message.offset + 1)
        events += 1
        if case .affected(let keys) = routed {
            applicableEvents += 1
            listingIDs.formUnion(keys.listingIDs)
            locationIDs.formUnion(keys.locationIDs)
        }
        if let timestamp = message.timestampMilliseconds {
            newestTimestamp = max(newestTimestamp ?? timestamp, timestamp)
        }
        if deadline == nil {
            let (seconds, attoseconds) = configuration.window.components
            let nanoseconds = UInt64(clamping: max(0, seconds)) &* 1_000_000_000
                &+ UInt64(clamping: max(0, attoseconds / 1_000_000_000))
            deadline = now.addingReportingOverflow(nanoseconds).overflow ? UInt64.max : now + nanoseconds
        }
        return tick(now: now)
    }

    /// What to do at `now` without new messages.
    public func tick(now: UInt64) -> ChangeBatcher.Action {
        guard let deadline, events > 0 else { return .idle }
        if pendingKeys >= configuration.maximumKeys || now >= deadline { return .flushNow }
        return .flushAt(nanoseconds: deadline)
    }

    /// Closes the batch: returns what it holds and starts an empty one.
    public mutating func take() -> Contents {
        let contents = Contents(
            listingIDs: listingIDs.sorted(), locationIDs: locationIDs.sorted(), nextOffsets: positions,
            events: events, applicableEvents: applicableEvents, newestTimestampMilliseconds: newestTimestamp)
        discard()
        return contents
    }

    /// Drops everything pending (the partitions are re-read from the stored offsets after a failure).
    public mutating func discard() {
        listingIDs = []
        locationIDs = []
        positions = [:]
        events = 0
        applicableEvents = 0
        deadline = nil
        newestTimestamp = nil
    }
}
