import CRdKafka
import Foundation

/// Receives librdkafka's callbacks. librdkafka calls them from whichever thread serves the handle's queue
/// (the poll thread), so the handlers must be thread-safe; they are immutable closures set at creation.
final class RDKafkaCallbacks: Sendable {
    /// Called for errors librdkafka reports through the error callback (broker down, fatal errors, ...).
    let onError: @Sendable (KafkaError) -> Void
    /// Called for each delivery report: the message id given to `produce` and the outcome.
    let onDelivery: @Sendable (UInt, Result<KafkaDeliveryReport, KafkaError>) -> Void

    init(
        onError: @escaping @Sendable (KafkaError) -> Void,
        onDelivery: @escaping @Sendable (UInt, Result<KafkaDeliveryReport, KafkaError>) -> Void = { _, _ in }
    ) {
        self.onError = onError
        self.onDelivery = onDelivery
    }
}

/// Owns one `rd_kafka_t` handle. librdkafka handles are thread-safe (every public `rd_kafka_*` call on a handle
/// may come from any thread), which is why this class is `@unchecked Sendable`; its only mutable state, the
/// topic-handle cache, is guarded by a lock.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind {
        case producer
        case consumer
    }

    let handle: OpaquePointer
    let kind: Kind
    /// Kept alive as long as the handle, because librdkafka holds an unretained pointer to it as opaque.
    private let callbacks: RDKafkaCallbacks
    private let topicsLock = NSLock()
    private var topicHandles: [String: OpaquePointer] = [:]
    /// Set by consumers that already ran `rd_kafka_consumer_close`; others skip the close on destroy.
    private let closedLock = NSLock()
    private var consumerClosed = false

    private init(handle: OpaquePointer, kind: Kind, callbacks: RDKafkaCallbacks) {
        self.handle = handle
        self.kind = kind
        self.callbacks = callbacks
    }

    /// Creates a handle from the given properties.
    ///
    /// - Throws: `KafkaError` with `.invalidConfiguration` when a property is rejected, or
    ///   `.clientCreationFailed`.
    static func make(
        kind: Kind, configuration: KafkaConfiguration, callbacks: RDKafkaCallbacks
    ) throws(KafkaError) -> RDKafkaClient {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(code: .clientCreationFailed, reason: "rd_kafka_conf_new failed")
        }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        // Sorted so that errors are deterministic when several properties are wrong.
        for (name, value) in configuration.properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, name, value, &errorBuffer, errorBuffer.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(
                    code: .invalidConfiguration,
                    reason: "property \(name): \(String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
            }
        }
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(callbacks).toOpaque())
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let opaque else { return }
            let callbacks = Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
            if err == RD_KAFKA_RESP_ERR__FATAL.rawValue, let rk {
                // The error callback only says "fatal"; the underlying cause is kept by the handle.
                var buffer = [CChar](repeating: 0, count: 512)
                let cause = rd_kafka_fatal_error(rk, &buffer, buffer.count)
                let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                var error = KafkaError(cause, reason: text)
                error.isFatal = true
                error.isRetriable = false
                callbacks.onError(error)
            } else {
                callbacks.onError(KafkaError(rdKafkaErrorCode: err, reason: reason.map { String(cString: $0) }))
            }
        }
        if kind == .producer {
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let opaque, let message else { return }
                let callbacks = Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
                let id = UInt(bitPattern: message.pointee._private)
                if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    callbacks.onDelivery(id, .failure(KafkaError(message.pointee.err)))
                } else {
                    let topic = String(cString: rd_kafka_topic_name(message.pointee.rkt))
                    callbacks.onDelivery(
                        id,
                        .success(KafkaDeliveryReport(
                            topic: topic, partition: message.pointee.partition, offset: message.pointee.offset)))
                }
            }
        }
        let type = kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER
        // On success rd_kafka_new takes ownership of conf; on failure it stays ours.
        guard let handle = rd_kafka_new(type, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(
                code: .clientCreationFailed,
                reason: String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return RDKafkaClient(handle: handle, kind: kind, callbacks: callbacks)
    }

    deinit {
        topicsLock.withLock {
            for topic in topicHandles.values { rd_kafka_topic_destroy(topic) }
        }
        let closed = closedLock.withLock { consumerClosed }
        if kind == .consumer && !closed {
            // Closing a consumer blocks on the group; the owner closes explicitly, a forgotten close must not hang.
            rd_kafka_destroy_flags(handle, Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE))
        } else {
            rd_kafka_destroy(handle)
        }
    }

    /// The cached topic handle for `name`, creating it on first use.
    func topicHandle(_ name: String) throws(KafkaError) -> OpaquePointer {
        topicsLock.lock()
        defer { topicsLock.unlock() }
        if let existing = topicHandles[name] { return existing }
        guard let topic = rd_kafka_topic_new(handle, name, nil) else {
            throw KafkaError(rd_kafka_last_error())
        }
        topicHandles[name] = topic
        return topic
    }

    /// Serves queued callbacks (error and delivery reports); blocks up to `timeoutMilliseconds`.
    func poll(timeoutMilliseconds: Int32) {
        rd_kafka_poll(handle, timeoutMilliseconds)
    }

    /// Closes the consumer: leaves the group and commits when auto-commit is on. Blocking.
    func consumerClose() throws(KafkaError) {
        let err = rd_kafka_consumer_close(handle)
        closedLock.withLock { consumerClosed = true }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }

    /// The fatal error this handle is stuck in, if any.
    func fatalError() -> KafkaError? {
        var buffer = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle, &buffer, buffer.count)
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        var error = KafkaError(
            err, reason: String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        error.isFatal = true
        error.isRetriable = false
        return error
    }
}

/// A `rd_kafka_topic_partition_list_t` owned for the duration of one call.
final class RDKafkaTopicPartitionList {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>

    init(_ entries: [KafkaTopicPartitionOffset]) {
        pointer = rd_kafka_topic_partition_list_new(Int32(clamping: entries.count))
        for entry in entries {
            let element = rd_kafka_topic_partition_list_add(pointer, entry.topic, entry.partition)
            element?.pointee.offset = entry.offset.rawValue
        }
    }

    init(_ partitions: [KafkaTopicPartition]) {
        pointer = rd_kafka_topic_partition_list_new(Int32(clamping: partitions.count))
        for entry in partitions {
            rd_kafka_topic_partition_list_add(pointer, entry.topic, entry.partition)
        }
    }

    /// Takes ownership of a list librdkafka allocated.
    init(owning pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        self.pointer = pointer
    }

    deinit { rd_kafka_topic_partition_list_destroy(pointer) }

    /// The entries, copied into Swift.
    var entries: [KafkaTopicPartitionOffset] {
        let list = pointer.pointee
        return (0..<Int(list.cnt)).map { index in
            let element = list.elems[index]
            return KafkaTopicPartitionOffset(
                topic: String(cString: element.topic), partition: element.partition,
                offset: KafkaOffset(element.offset))
        }
    }

    /// The first per-partition error, if any.
    var firstError: KafkaError? {
        let list = pointer.pointee
        for index in 0..<Int(list.cnt) where list.elems[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            return KafkaError(list.elems[index].err)
        }
        return nil
    }
}

/// Blocking librdkafka calls run here, never on Swift's cooperative pool.
enum RDKafkaBlocking {
    static let queue = DispatchQueue(label: "kafka.blocking", attributes: .concurrent)

    /// Runs `body` on the blocking queue and resumes with its result.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws(KafkaError) -> T) async throws(KafkaError) -> T {
        let result: Result<T, KafkaError> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(KafkaError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
