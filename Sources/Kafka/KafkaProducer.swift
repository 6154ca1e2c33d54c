import CRdKafka
import Foundation

/// A Kafka producer over one librdkafka handle.
///
/// A dedicated thread serves librdkafka's callbacks (`rd_kafka_poll`), so delivery reports and errors arrive
/// without the caller polling. Blocking calls (`rd_kafka_flush`) run off Swift's cooperative pool.
public final class KafkaProducer: Sendable {
    let client: RDKafkaClient
    private let pending: KafkaLockedValue<PendingDeliveries>
    /// False once ``close(timeout:)`` begins: no new records are accepted.
    private let accepting = KafkaLockedValue(true)
    /// False once the callback thread must stop.
    private let running = KafkaLockedValue(true)
    private let errorContinuation: AsyncStream<KafkaError>.Continuation

    /// Errors librdkafka reported outside of a call (broker down, transport errors) and failed deliveries of
    /// records sent with ``enqueue(_:)``. Buffers the newest 1,024.
    public let errors: AsyncStream<KafkaError>

    private struct PendingDeliveries {
        var nextID: UInt = 1
        var waiting: [UInt: CheckedContinuation<Result<KafkaDeliveryReport, KafkaError>, Never>] = [:]
    }

    /// Creates a producer.
    ///
    /// - Parameter configuration: librdkafka properties; `bootstrap.servers` is required.
    /// - Throws: `KafkaError` when a property is invalid or the handle cannot be created.
    public init(configuration: KafkaConfiguration) throws(KafkaError) {
        let (stream, continuation) = AsyncStream.makeStream(
            of: KafkaError.self, bufferingPolicy: .bufferingNewest(1024))
        errors = stream
        errorContinuation = continuation
        let pending = KafkaLockedValue(PendingDeliveries())
        self.pending = pending
        let callbacks = RDKafkaCallbacks(
            onError: { continuation.yield($0) },
            onDelivery: { id, result in
                // Id 0 marks a fire-and-forget record: only its failure is worth reporting.
                guard id != 0 else {
                    if case .failure(let error) = result { continuation.yield(error) }
                    return
                }
                let waiter = pending.withLock { $0.waiting.removeValue(forKey: id) }
                waiter?.resume(returning: result)
            })
        client = try RDKafkaClient.make(kind: .producer, configuration: configuration, callbacks: callbacks)
        let client = self.client
        let running = self.running
        // The thread keeps the client alive until it stops, so the handle is destroyed only after its last poll.
        let thread = Thread {
            while running.withLock({ $0 }) {
                client.poll(timeoutMilliseconds: 100)
            }
        }
        thread.name = "kafka.producer.poll"
        thread.start()
    }

    deinit {
        running.withLock { $0 = false }
        errorContinuation.finish()
    }

    /// Enqueues a record and waits for its delivery report.
    ///
    /// - Returns: where the record landed.
    /// - Throws: `KafkaError` when the record cannot be enqueued (`.queueFull`, `.unknownTopic`, ...) or the
    ///   broker rejects it after librdkafka's retries (`.messageTimedOut`, `.messageSizeTooLarge`, ...).
    public func send(_ record: KafkaProducerRecord) async throws(KafkaError) -> KafkaDeliveryReport {
        let topic = try client.topicHandle(record.topic)
        let result: Result<KafkaDeliveryReport, KafkaError> = await withCheckedContinuation { continuation in
            let id = pending.withLock { state in
                defer { state.nextID += 1 }
                state.waiting[state.nextID] = continuation
                return state.nextID
            }
            do throws(KafkaError) {
                try produce(record, topic: topic, id: id)
            } catch {
                let waiter = pending.withLock { $0.waiting.removeValue(forKey: id) }
                waiter?.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// Enqueues a record without waiting for delivery; a failed delivery is reported on ``errors``.
    ///
    /// - Throws: `KafkaError` when the record cannot be enqueued (for example `.queueFull`: poll or flush,
    ///   then retry).
    public func enqueue(_ record: KafkaProducerRecord) throws(KafkaError) {
        try produce(record, topic: client.topicHandle(record.topic), id: 0)
    }

    private func produce(_ record: KafkaProducerRecord, topic: OpaquePointer, id: UInt) throws(KafkaError) {
        guard accepting.withLock({ $0 }) else { throw KafkaError(code: .closed, reason: "producer is closed") }
        let partition = record.partition ?? crdkafka_partition_unassigned()
        if !record.headers.isEmpty {
            try produceWithHeaders(record, topic: topic, partition: partition, id: id)
            return
        }
        // A nil value produces a null payload (a tombstone); RD_KAFKA_MSG_F_COPY lets librdkafka copy the bytes
        // before rd_kafka_produce returns, so the Swift buffers need not outlive the call.
        let status = Self.withOptionalBytes(record.value) { value in
            Self.withOptionalBytes(record.key) { key in
                rd_kafka_produce(
                    topic, partition, RD_KAFKA_MSG_F_COPY,
                    UnsafeMutableRawPointer(mutating: value?.baseAddress), value?.count ?? 0,
                    key?.baseAddress, key?.count ?? 0,
                    UnsafeMutableRawPointer(bitPattern: id))
            }
        }
        if status != 0 { throw KafkaError(rd_kafka_last_error()) }
    }

    /// `rd_kafka_produceva` (the array form of the variadic `rd_kafka_producev`, which Swift cannot call): the only
    /// produce call that takes headers. The headers list is handed over to librdkafka on success.
    private func produceWithHeaders(
        _ record: KafkaProducerRecord, topic: OpaquePointer, partition: Int32, id: UInt
    ) throws(KafkaError) {
        guard let headers = rd_kafka_headers_new(record.headers.count) else {
            throw KafkaError(code: .invalidArgument, reason: "rd_kafka_headers_new failed")
        }
        for header in record.headers {
            let err = Self.withOptionalBytes(header.value) { value in
                rd_kafka_header_add(headers, header.name, -1, value?.baseAddress, value?.count ?? 0)
            }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                rd_kafka_headers_destroy(headers)
                throw KafkaError(err)
            }
        }
        let error = Self.withOptionalBytes(record.value) { value in
            Self.withOptionalBytes(record.key) { key -> OpaquePointer? in
                var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 7)
                fields[0].vtype = RD_KAFKA_VTYPE_RKT
                fields[0].u.rkt = topic
                fields[1].vtype = RD_KAFKA_VTYPE_PARTITION
                fields[1].u.i32 = partition
                fields[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                fields[2].u.i = RD_KAFKA_MSG_F_COPY
                fields[3].vtype = RD_KAFKA_VTYPE_VALUE
                fields[3].u.mem.ptr = UnsafeMutableRawPointer(mutating: value?.baseAddress)
                fields[3].u.mem.size = value?.count ?? 0
                fields[4].vtype = RD_KAFKA_VTYPE_KEY
                fields[4].u.mem.ptr = UnsafeMutableRawPointer(mutating: key?.baseAddress)
                fields[4].u.mem.size = key?.count ?? 0
                fields[5].vtype = RD_KAFKA_VTYPE_OPAQUE
                fields[5].u.ptr = UnsafeMutableRawPointer(bitPattern: id)
                fields[6].vtype = RD_KAFKA_VTYPE_HEADERS
                fields[6].u.headers = headers
                return rd_kafka_produceva(client.handle, fields, fields.count)
            }
        }
        if let error {
            let code = rd_kafka_error_code(error)
            rd_kafka_error_destroy(error)
            rd_kafka_headers_destroy(headers)
            throw KafkaError(code)
        }
    }

    /// ``flush(timeout:)`` for a thread you own: blocks until every enqueued record is delivered (or failed), up
    /// to `timeout`. Never call it from the cooperative pool.
    ///
    /// - Throws: `KafkaError` `.timedOut` when records are still in flight after `timeout`.
    public func flushSynchronously(timeout: Duration) throws(KafkaError) {
        let err = rd_kafka_flush(client.handle, Int32(clamping: timeout.wholeMilliseconds))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }

    /// Gives `body` a non-nil buffer for a non-nil array, even an empty one, so "empty" and "null" stay distinct.
    private static func withOptionalBytes<T>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
        guard let bytes else { return body(nil) }
        if bytes.isEmpty {
            var sentinel: UInt8 = 0
            return withUnsafeBytes(of: &sentinel) { body(UnsafeRawBufferPointer(rebasing: $0[0..<0])) }
        }
        return bytes.withUnsafeBytes { body($0) }
    }

    /// Waits until every enqueued record is delivered (or failed), up to `timeout`.
    ///
    /// - Throws: `KafkaError` `.timedOut` when records are still in flight after `timeout`.
    public func flush(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        let client = self.client
        try await RDKafkaBlocking.run { () throws(KafkaError) in
            let err = rd_kafka_flush(client.handle, Int32(clamping: timeout.wholeMilliseconds))
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
        }
    }

    /// The number of records enqueued but not yet delivered or failed.
    public var outstandingCount: Int { Int(rd_kafka_outq_len(client.handle)) }

    /// Stops accepting records, flushes, then stops the callback thread; later sends throw `.closed`.
    /// Records still undelivered after `timeout` are purged, and their ``send(_:)`` callers get the purge error
    /// rather than waiting forever.
    ///
    /// - Throws: `KafkaError` `.timedOut` when records were still in flight after `timeout`.
    public func close(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        accepting.withLock { $0 = false }
        var flushError: KafkaError?
        do throws(KafkaError) {
            try await flush(timeout: timeout)
        } catch {
            flushError = error
            let client = self.client
            try? await RDKafkaBlocking.run { () throws(KafkaError) in
                rd_kafka_purge(client.handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
                // Purged records get delivery reports with a purge error; serve them so their waiters resume.
                rd_kafka_flush(client.handle, 1000)
            }
        }
        running.withLock { $0 = false }
        errorContinuation.finish()
        let abandoned = pending.withLock { state in
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for waiter in abandoned {
            waiter.resume(returning: .failure(KafkaError(code: .closed, reason: "producer closed before delivery")))
        }
        if let flushError { throw flushError }
    }
}
