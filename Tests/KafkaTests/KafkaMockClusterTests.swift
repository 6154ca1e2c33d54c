import Kafka
import Testing

@Suite("Kafka against librdkafka's mock cluster", .serialized, .timeLimit(.minutes(2)))
struct KafkaMockClusterTests {
    @Test func roundTripWithKeysAndTombstonesAcrossPartitions() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("round-trip", partitions: 4)
        let producer = try KafkaProducer(configuration: producerConfiguration(cluster))
        var sent: [KafkaProducerRecord] = []
        for index in 0..<200 {
            let value: [UInt8]? = index % 7 == 0 ? nil : index % 50 == 1 ? [] : bytes("value-\(index)")
            let record = KafkaProducerRecord(
                topic: "round-trip", partition: Int32(index % 4), key: index % 11 == 0 ? nil : bytes("key-\(index)"),
                value: value)
            try producer.enqueue(record)
            sent.append(record)
        }
        try await producer.flush()

        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster))
        try consumer.assign((0..<4).map { KafkaTopicPartitionOffset(topic: "round-trip", partition: $0, offset: .beginning) })
        let received = try await collect(sent.count, from: consumer)
        try await consumer.close()

        for partition in Int32(0)..<4 {
            let expected = sent.filter { $0.partition == partition }
            let got = received.filter { $0.partition == partition }
            #expect(got.map(\.offset) == Array(0..<Int64(expected.count)))
            #expect(got.map(\.key) == expected.map(\.key))
            #expect(got.map(\.value) == expected.map(\.value))
            #expect(got.allSatisfy { $0.topic == "round-trip" && $0.timestampMilliseconds != nil })
        }
        #expect(received.filter(\.isTombstone).count == sent.filter { $0.value == nil }.count)
    }

    @Test func manualAssignmentStartsAtTheGivenOffset() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.createTopic("from-offset", partitions: 2)
        let producer = try KafkaProducer(configuration: producerConfiguration(cluster))
        for index in 0..<10 {
            let report = try await producer.send(
                KafkaProducerRecord(topic: "from-offset", partition: 1, key: nil, value: bytes("m\(index)")))
            #expect(report == KafkaDeliveryReport(topic: "from-offset", partition: 1, offset: Int64(index)))
        }
        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster))
        try consumer.assign([KafkaTopicPartitionOffset(topic: "from-offset", partition: 1, offset: KafkaOffset(6))])
        #expect(try consumer.assignment() == [KafkaTopicPartition(topic: "from-offset", partition: 1)])
        let received = try await collect(4, from: consumer)
        #expect(received.map(\.offset) == [6, 7, 8, 9])
        #expect(received.map(\.value) == (6..<10).map { bytes("m\($0)") })
        let marks = try await consumer.watermarks(topic: "from-offset", partition: 1)
        #expect(marks.low == 0 && marks.high == 10)
        try await consumer.close()
        try await producer.close()
        await #expect(throws: KafkaError.self) {
            _ = try await producer.send(KafkaProducerRecord(topic: "from-offset", value: nil))
        }
    }

    @Test func groupSubscriptionConsumesAndCommits() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.createTopic("grouped", partitions: 2)
        let producer = try KafkaProducer(configuration: producerConfiguration(cluster))
        for index in 0..<20 {
            try producer.enqueue(KafkaProducerRecord(
                topic: "grouped", partition: Int32(index % 2), key: bytes("k\(index)"), value: bytes("v\(index)")))
        }
        try await producer.flush()

        var configuration = consumerConfiguration(cluster, group: "group-a")
        configuration.enableAutoOffsetStore = false
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe(topics: ["grouped"])
        let received = try await collect(20, from: consumer)
        #expect(Set(received.compactMap(\.value)) == Set((0..<20).map { bytes("v\($0)") }))
        for message in received { try consumer.storeOffset(after: message) }
        try await consumer.commitStoredOffsets()
        let committed = try await consumer.committedOffsets(
            for: [KafkaTopicPartition(topic: "grouped", partition: 0), KafkaTopicPartition(topic: "grouped", partition: 1)])
        #expect(committed.map(\.offset) == [KafkaOffset(10), KafkaOffset(10)])
        #expect(Set(try consumer.assignment().map(\.partition)) == [0, 1])
        try await consumer.close()
    }

    @Test func brokerDownThenUpLosesNothing() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.createTopic("outage", partitions: 2)
        var producerSettings = producerConfiguration(cluster)
        producerSettings.enableIdempotence = true
        let producer = try KafkaProducer(configuration: producerSettings)
        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster))
        try consumer.assign((0..<2).map { KafkaTopicPartitionOffset(topic: "outage", partition: $0, offset: .beginning) })

        for index in 0..<30 {
            try producer.enqueue(KafkaProducerRecord(topic: "outage", partition: Int32(index % 2), value: bytes("\(index)")))
        }
        try await producer.flush()
        let before = try await collect(30, from: consumer)

        // Keep polling through the outage: librdkafka serves error events from the consumer's poll.
        let collecting = Task { try await collect(30, from: consumer) }
        try cluster.setBrokerDown(1)
        for index in 30..<60 {
            try producer.enqueue(KafkaProducerRecord(topic: "outage", partition: Int32(index % 2), value: bytes("\(index)")))
        }
        // The outage is reported as a retriable error event, not a crash or a thrown error.
        let outage = try #require(await firstError(in: consumer.errors) { _ in true })
        #expect(outage.isRetriable, "\(outage.debugDescription)")
        #expect([.transport, .allBrokersDown].contains(outage.code))
        try cluster.setBrokerUp(1)

        let after = try await collecting.value
        try await producer.flush()
        let values = (before + after).compactMap(\.value).map { String(decoding: $0, as: UTF8.self) }
        #expect(values.count == 60)
        #expect(Set(values) == Set((0..<60).map(String.init)))
        try await consumer.close()
    }

    @Test func injectedRequestErrorsAreRetriedOrClassified() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.createTopic("injected", partitions: 1)
        let producer = try KafkaProducer(configuration: producerConfiguration(cluster))
        // Warm up the metadata so the injected errors hit the requests under test.
        _ = try await producer.send(KafkaProducerRecord(topic: "injected", partition: 0, value: bytes("warm-up")))

        try cluster.pushRequestErrors(.produce, [.notLeaderForPartition, .requestTimedOut, .leaderNotAvailable])
        let report = try await producer.send(KafkaProducerRecord(topic: "injected", partition: 0, value: bytes("retried")))
        #expect(report.offset == 1)

        try cluster.pushRequestErrors(.produce, [.messageSizeTooLarge])
        let rejected = await #expect(throws: KafkaError.self) {
            _ = try await producer.send(KafkaProducerRecord(topic: "injected", partition: 0, value: bytes("rejected")))
        }
        #expect(rejected?.code == .messageSizeTooLarge)
        #expect(rejected?.isRetriable == false)
        #expect(rejected?.isFatal == false)

        try cluster.pushRequestErrors(.fetch, [.notLeaderForPartition, .requestTimedOut])
        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster))
        try consumer.assign([KafkaTopicPartitionOffset(topic: "injected", partition: 0, offset: .beginning)])
        let received = try await collect(2, from: consumer)
        #expect(received.compactMap(\.value) == [bytes("warm-up"), bytes("retried")])
        try await consumer.close()
        #expect(throws: KafkaError.self) { try cluster.pushRequestErrors(.produce, [.closed]) }
        #expect(throws: KafkaError.self) { try cluster.setBrokerDown(99) }
    }

    @Test func closingWithUndeliverableRecordsFailsTheirSendsInsteadOfHanging() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.createTopic("stuck", partitions: 1)
        let producer = try KafkaProducer(configuration: producerConfiguration(cluster))
        _ = try await producer.send(KafkaProducerRecord(topic: "stuck", partition: 0, value: bytes("first")))
        try cluster.setBrokerDown(1)
        // The mock applies set-down asynchronously; once the producer reports the outage the record is stuck.
        _ = await firstError(in: producer.errors) { [.transport, .allBrokersDown].contains($0.code) }
        let pendingSend = Task { try await producer.send(KafkaProducerRecord(topic: "stuck", partition: 0, value: bytes("never"))) }
        while producer.outstandingCount == 0 { await Task.yield() }
        let closeError = await #expect(throws: KafkaError.self) { try await producer.close(timeout: .milliseconds(200)) }
        #expect(closeError?.code == .timedOut)
        let sendError = await #expect(throws: KafkaError.self) { _ = try await pendingSend.value }
        #expect(sendError.map { [KafkaError.Code("_PURGE_QUEUE"), KafkaError.Code("_PURGE_INFLIGHT"), .closed].contains($0.code) } == true,
                "\(String(describing: sendError))")
        let afterClose = await #expect(throws: KafkaError.self) {
            _ = try await producer.send(KafkaProducerRecord(topic: "stuck", value: nil))
        }
        #expect(afterClose?.code == .closed)
    }

    @Test func cancellingTheIteratingTaskEndsTheSequenceAndCloseStopsIt() async throws {
        let cluster = try KafkaMockCluster()
        try cluster.createTopic("quiet", partitions: 1)
        let consumer = try KafkaConsumer(configuration: consumerConfiguration(cluster))
        try consumer.assign([KafkaTopicPartitionOffset(topic: "quiet", partition: 0, offset: .beginning)])
        let iterating = Task { try await collect(1, from: consumer).count }
        iterating.cancel()
        #expect(try await iterating.value == 0)

        let waiting = Task { try await collect(1, from: consumer).count }
        try await consumer.close()
        #expect(try await waiting.value == 0)
        var iterator = consumer.messages.makeAsyncIterator()
        #expect(try await iterator.next() == nil)
        try await consumer.close()
    }
}
