import Dispatch
import Kafka
import Testing

/// Headers, metadata, cached watermarks, the commit that does not wait, and the blocking close, against the
/// mock cluster. The blocking calls run on a dispatch queue, never on the cooperative pool.
@Suite("Kafka blocking calls and headers", .serialized, .timeLimit(.minutes(2)))
struct KafkaBlockingCallsTests {
    func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Result { try work() }) }
        }
        return try result.get()
    }

    @Test func headersRoundTripAndTheBlockingCallsWork() async throws {
        let cluster = try KafkaMockCluster(brokers: 2)
        try cluster.createTopic("headed", partitions: 3)
        let producer = try KafkaProducer(configuration: producerConfiguration(cluster))
        let headers = [
            KafkaHeader(name: "reason", text: "malformedJSON"), KafkaHeader(name: "empty", value: []),
            KafkaHeader(name: "null", value: nil), KafkaHeader(name: "reason", text: "second"),
        ]
        let report = try await producer.send(
            KafkaProducerRecord(topic: "headed", partition: 2, key: bytes("k"), value: bytes("v"), headers: headers))
        try producer.enqueue(KafkaProducerRecord(topic: "headed", partition: 2, value: nil, headers: headers))
        try await offPool { try producer.flushSynchronously(timeout: .seconds(10)) }
        #expect(report.partition == 2 && report.offset == 0)

        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster, group: "blocking"))
        #expect(try await offPool { try consumer.partitionCount(topic: "headed", timeout: .seconds(5)) } == 3)
        try consumer.assign([KafkaTopicPartitionOffset(topic: "headed", partition: 2, offset: .beginning)])
        let received = try await collect(2, from: consumer)
        #expect(received.map(\.headers) == [headers, headers])
        #expect(received[0].header("reason") == bytes("malformedJSON"))
        #expect(received[0].value == bytes("v") && received[1].isTombstone)
        let marks = consumer.cachedWatermarks(topic: "headed", partition: 2)
        #expect(marks?.high == 2)
        try consumer.commitWithoutWaiting([received[1].nextPosition])
        var committed: [KafkaTopicPartitionOffset] = []
        for _ in 0..<200 {
            committed = try await consumer.committedOffsets(for: [KafkaTopicPartition(topic: "headed", partition: 2)])
            if committed.first?.offset == KafkaOffset(2) { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(committed.first?.offset == KafkaOffset(2))
        try await offPool { try consumer.closeSynchronously() }
        try await offPool { try consumer.closeSynchronously() }  // idempotent
        try await producer.close()
    }

    @Test func aTopicInErrorIsReportedByTheMetadataCall() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.setTopicError("broken", .unknownTopicOrPartition)
        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster))
        await #expect(throws: KafkaError.self) {
            _ = try await offPool { try consumer.partitionCount(topic: "broken", timeout: .seconds(5)) }
        }
        try await offPool { try consumer.closeSynchronously() }
    }
}
