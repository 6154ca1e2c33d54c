import CRdKafka
import Foundation

/// A Kafka consumer over one librdkafka handle, with manual partition assignment or group subscription.
///
/// Messages are read through ``messages`` (an `AsyncSequence`) or the blocking ``poll(timeout:)``. The async
/// sequence runs `rd_kafka_consumer_poll` on the consumer's own serial dispatch queue, never on Swift's
/// cooperative pool. Errors librdkafka reports on the side (broker down, transport failures) arrive on
/// ``errors`` and do not stop the sequence; only a fatal error ends it by throwing. As in librdkafka, those
/// errors are served by the poll itself: they arrive while someone iterates ``messages`` or calls ``poll(timeout:)``.
public final class KafkaConsumer: Sendable {
    let client: RDKafkaClient
    /// Serial: every `rd_kafka_consumer_poll` and the final close run here, one at a time.
    private let pollQueue = DispatchQueue(label: "kafka.consumer.poll")
    private let state = KafkaLockedValue(KafkaConsumerStateMachine())
    private let errorContinuation: AsyncStream<KafkaError>.Continuation

    /// Errors librdkafka reported outside of a call (broker down, transport errors, fatal errors) and
    /// per-partition consume errors. Buffers the newest 1,024; read it or ignore it.
    public let errors: AsyncStream<KafkaError>

    /// Creates a consumer.
    ///
    /// - Parameter configuration: librdkafka properties; `bootstrap.servers` is required, `group.id` is required
    ///   for ``subscribe(topics:)`` and for committing. When `group.id` is missing a private one is set, because
    ///   librdkafka's consumer requires it even for manual assignment.
    /// - Throws: `KafkaError` when a property is invalid or the handle cannot be created.
    public init(configuration: KafkaConfiguration) throws(KafkaError) {
        var configuration = configuration
        if configuration.groupID == nil {
            configuration.groupID = "explore-unassigned-\(UInt64.random(in: 0...UInt64.max))"
        }
        let (stream, continuation) = AsyncStream.makeStream(
            of: KafkaError.self, bufferingPolicy: .bufferingNewest(1024))
        self.errors = stream
        self.errorContinuation = continuation
        let state = self.state
        let callbacks = RDKafkaCallbacks(onError: { error in
            let action = state.withLock { $0.errorReported(error) }
            if action != .ignore { continuation.yield(error) }
        })
        client = try RDKafkaClient.make(kind: .consumer, configuration: configuration, callbacks: callbacks)
        // Route the main queue (error callbacks) to the consumer queue so one poll serves both.
        rd_kafka_poll_set_consumer(client.handle)
    }

    deinit {
        errorContinuation.finish()
    }

    /// Assigns partitions explicitly, each from the given offset (absolute, `.beginning`, `.end` or `.stored`).
    /// Replaces any previous assignment; no group rebalancing is involved.
    ///
    /// - Throws: `KafkaError` when librdkafka rejects the assignment.
    public func assign(_ partitions: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(partitions)
        let err = rd_kafka_assign(client.handle, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }

    /// Subscribes to topics as a member of the configured consumer group; partitions are assigned by the
    /// group's rebalance protocol and start from the committed offsets (or `auto.offset.reset`).
    ///
    /// - Throws: `KafkaError` when librdkafka rejects the subscription.
    public func subscribe(topics: [String]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(topics.map { KafkaTopicPartition(topic: $0, partition: -1) })
        let err = rd_kafka_subscribe(client.handle, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }

    /// The partitions currently assigned to this consumer (by ``assign(_:)`` or by the group).
    ///
    /// - Throws: `KafkaError` when librdkafka cannot report the assignment.
    public func assignment() throws(KafkaError) -> [KafkaTopicPartition] {
        var pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let err = rd_kafka_assignment(client.handle, &pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
        guard let pointer else { return [] }
        return RDKafkaTopicPartitionList(owning: pointer).entries.map(\.topicPartition)
    }

    /// Waits up to `timeout` for the next message. Blocking: call it from a thread you own, never from async
    /// code (use ``messages`` there).
    ///
    /// Per-partition consume errors (for example an unknown topic) are reported on ``errors`` and skipped.
    ///
    /// - Returns: the next message, or nil when none arrived in time or the consumer is closed.
    /// - Throws: the fatal `KafkaError` once the handle is in a fatal state.
    public func poll(timeout: Duration) throws(KafkaError) -> KafkaMessage? {
        switch state.withLock({ $0.nextPollAction(isCancelled: false) }) {
        case .poll: break
        case .finish: return nil
        case .fail(let error): throw error
        }
        guard let message = rd_kafka_consumer_poll(client.handle, Int32(clamping: timeout.wholeMilliseconds)) else {
            return nil
        }
        defer { rd_kafka_message_destroy(message) }
        let raw = message.pointee
        if raw.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            var error = KafkaError(raw.err, reason: Self.errorText(raw))
            if raw.err == RD_KAFKA_RESP_ERR__FATAL, let fatal = client.fatalError() { error = fatal }
            switch state.withLock({ $0.errorReported(error) }) {
            case .report:
                errorContinuation.yield(error)
            case .reportAndFail(let fatal):
                errorContinuation.yield(fatal)
                throw fatal
            case .ignore:
                break
            }
            return nil
        }
        return Self.copy(message)
    }

    /// librdkafka puts the error string of a consume error in the payload.
    private static func errorText(_ raw: rd_kafka_message_t) -> String? {
        guard let payload = raw.payload, raw.len > 0 else { return nil }
        let bytes = UnsafeRawBufferPointer(start: payload, count: raw.len)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Copies a message out of librdkafka's buffers.
    /// Takes the message pointer (not a copy of the struct): librdkafka finds the timestamp through it.
    private static func copy(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaMessage {
        let raw = message.pointee
        let topic = String(cString: rd_kafka_topic_name(raw.rkt))
        let key = raw.key.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        let value = raw.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.len)) }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        return KafkaMessage(
            topic: topic, partition: raw.partition, offset: raw.offset, key: key, value: value,
            timestampMilliseconds: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp,
            headers: copyHeaders(message))
    }

    /// The message's headers; none when it has none (or they cannot be parsed).
    private static func copyHeaders(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> [KafkaHeader] {
        var list: OpaquePointer?
        guard rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        var headers: [KafkaHeader] = []
        var index = 0
        while true {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            guard rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR,
                let name
            else { break }
            headers.append(KafkaHeader(
                name: String(cString: name),
                value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
            index += 1
        }
        return headers
    }

    /// Polls on the consumer's queue until a message arrives, the consumer closes, or `cancellation` is set.
    func nextMessage() async throws(KafkaError) -> KafkaMessage? {
        let cancellation = KafkaLockedValue(false)
        let result: Result<KafkaMessage?, KafkaError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                pollQueue.async {
                    // Short polls so cancellation and close are noticed promptly.
                    while true {
                        let isCancelled = cancellation.withLock { $0 }
                        switch self.state.withLock({ $0.nextPollAction(isCancelled: isCancelled) }) {
                        case .finish:
                            continuation.resume(returning: .success(nil))
                            return
                        case .fail(let error):
                            continuation.resume(returning: .failure(error))
                            return
                        case .poll:
                            do throws(KafkaError) {
                                if let message = try self.poll(timeout: .milliseconds(100)) {
                                    continuation.resume(returning: .success(message))
                                    return
                                }
                            } catch {
                                continuation.resume(returning: .failure(error))
                                return
                            }
                        }
                    }
                }
            }
        } onCancel: {
            cancellation.withLock { $0 = true }
        }
        return try result.get()
    }

    /// The messages, in order within each partition. Ends when the consumer is closed or the iterating task is
    /// cancelled; throws when the handle enters a fatal state. Iterate it from one task at a time.
    public var messages: KafkaConsumerMessages { KafkaConsumerMessages(consumer: self) }

    /// Stores the position after `message` for the next commit (used with `enable.auto.offset.store=false`).
    ///
    /// - Throws: `KafkaError` when the partition is not assigned.
    public func storeOffset(after message: KafkaMessage) throws(KafkaError) {
        try storeOffsets([message.nextPosition])
    }

    /// Stores positions (the next offset to consume, per partition) for the next commit.
    ///
    /// - Throws: `KafkaError` when a partition is not assigned.
    public func storeOffsets(_ positions: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(positions)
        let err = rd_kafka_offsets_store(client.handle, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
        if let error = list.firstError { throw error }
    }

    /// Commits positions (the next offset to consume, per partition) to the group and waits for the broker.
    ///
    /// - Throws: `KafkaError` when the commit fails.
    public func commit(_ positions: [KafkaTopicPartitionOffset]) async throws(KafkaError) {
        let client = self.client
        try await RDKafkaBlocking.run { () throws(KafkaError) in
            let list = RDKafkaTopicPartitionList(positions)
            let err = rd_kafka_commit(client.handle, list.pointer, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            if let error = list.firstError { throw error }
        }
    }

    /// Commits the stored offsets and waits for the broker. Having nothing to commit is not an error.
    ///
    /// - Throws: `KafkaError` when the commit fails.
    public func commitStoredOffsets() async throws(KafkaError) {
        let client = self.client
        try await RDKafkaBlocking.run { () throws(KafkaError) in
            let err = rd_kafka_commit(client.handle, nil, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET { throw KafkaError(err) }
        }
    }

    /// The group's committed positions for `partitions` (`.invalid` where none is committed).
    ///
    /// - Throws: `KafkaError` when the coordinator cannot be reached within `timeout`.
    public func committedOffsets(
        for partitions: [KafkaTopicPartition], timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> [KafkaTopicPartitionOffset] {
        let client = self.client
        return try await RDKafkaBlocking.run { () throws(KafkaError) in
            let list = RDKafkaTopicPartitionList(partitions)
            let err = rd_kafka_committed(client.handle, list.pointer, Int32(clamping: timeout.wholeMilliseconds))
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            if let error = list.firstError { throw error }
            return list.entries
        }
    }

    /// The low and high watermarks of a partition, asked of the broker (the high one is the next offset
    /// to be written, so `high - low` records are in the partition).
    ///
    /// - Throws: `KafkaError` when the leader cannot be reached within `timeout`.
    public func watermarks(
        topic: String, partition: Int32, timeout: Duration = .seconds(10)
    ) async throws(KafkaError) -> (low: Int64, high: Int64) {
        let client = self.client
        let pair = try await RDKafkaBlocking.run { () throws(KafkaError) -> [Int64] in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(
                client.handle, topic, partition, &low, &high, Int32(clamping: timeout.wholeMilliseconds))
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            return [low, high]
        }
        return (pair[0], pair[1])
    }

    /// Sends a commit of positions (the next offset to consume, per partition) to the group without waiting for
    /// the broker: the outcome is not reported. For consumers whose real checkpoint lives elsewhere and who
    /// commit only so that lag tooling sees their progress.
    ///
    /// - Throws: `KafkaError` when librdkafka refuses to queue the commit.
    public func commitWithoutWaiting(_ positions: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        guard !positions.isEmpty else { return }
        let list = RDKafkaTopicPartitionList(positions)
        let err = rd_kafka_commit(client.handle, list.pointer, 1)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }

    /// The number of partitions of `topic`, asked of the cluster's metadata. Blocking (up to `timeout`): call it
    /// from a thread you own.
    ///
    /// - Throws: `KafkaError` `.unknownTopicOrPartition` when the topic does not exist, a transport or timeout
    ///   error when no broker answers.
    public func partitionCount(topic: String, timeout: Duration) throws(KafkaError) -> Int {
        let topicHandle = try client.topicHandle(topic)
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(
            client.handle, 0, topicHandle, &metadata, Int32(clamping: timeout.wholeMilliseconds))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
        guard let metadata else { throw KafkaError(code: .unknownTopicOrPartition, reason: "no metadata for \(topic)") }
        defer { rd_kafka_metadata_destroy(metadata) }
        let topics = UnsafeBufferPointer(start: metadata.pointee.topics, count: Int(metadata.pointee.topic_cnt))
        guard let entry = topics.first(where: { String(cString: $0.topic) == topic }) else {
            throw KafkaError(code: .unknownTopicOrPartition, reason: "topic \(topic) is not in the metadata")
        }
        if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(entry.err, reason: "topic \(topic)") }
        guard entry.partition_cnt > 0 else {
            throw KafkaError(code: .unknownTopicOrPartition, reason: "topic \(topic) has no partitions")
        }
        return Int(entry.partition_cnt)
    }

    /// The low and high watermarks librdkafka last saw for a partition in fetch responses, without asking the
    /// broker; nil when it has not fetched from the partition yet.
    public func cachedWatermarks(topic: String, partition: Int32) -> (low: Int64, high: Int64)? {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(client.handle, topic, partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return (low, high)
    }

    /// ``close()`` for a thread you own: blocks until the handle is closed. Never call it from the cooperative
    /// pool or while another thread is blocked in ``poll(timeout:)``.
    ///
    /// - Throws: `KafkaError` when librdkafka reports an error while closing.
    public func closeSynchronously() throws(KafkaError) {
        guard state.withLock({ $0.closeRequested() }) == .closeHandle else { return }
        errorContinuation.finish()
        let client = self.client
        let result: Result<Void, KafkaError> = pollQueue.sync {
            do throws(KafkaError) {
                try client.consumerClose()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Leaves the group (committing if auto-commit is on) and ends ``messages``. Idempotent.
    ///
    /// - Throws: `KafkaError` when librdkafka reports an error while closing.
    public func close() async throws(KafkaError) {
        guard state.withLock({ $0.closeRequested() }) == .closeHandle else { return }
        errorContinuation.finish()
        let client = self.client
        let result: Result<Void, KafkaError> = await withCheckedContinuation { continuation in
            // On the poll queue, so the close runs after any poll in flight has returned.
            pollQueue.async {
                do throws(KafkaError) {
                    try client.consumerClose()
                    continuation.resume(returning: .success(()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        try result.get()
    }
}

/// The messages of a ``KafkaConsumer`` as an `AsyncSequence`.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = KafkaMessage
    let consumer: KafkaConsumer

    /// Iterates the consumer's messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: KafkaConsumer

        /// The next message; nil when the consumer is closed or the task is cancelled.
        public mutating func next() async throws(KafkaError) -> KafkaMessage? {
            try await consumer.nextMessage()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(KafkaError) -> KafkaMessage? {
            try await consumer.nextMessage()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(consumer: consumer) }
}

/// A value behind a lock; the lock makes the class safe to share, hence `@unchecked Sendable`.
final class KafkaLockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
