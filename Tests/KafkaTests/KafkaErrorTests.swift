import Kafka
import Testing

@Suite("KafkaError classification and configuration")
struct KafkaErrorTests {
    /// Every numeric librdkafka code maps to its name and back, and no code is both fatal and retriable.
    @Test func everyLibrdkafkaCodeRoundTrips() {
        let numericCodes = Array(-199 ... -140) + Array(1...97)
        for numeric in numericCodes {
            let error = KafkaError(rdKafkaErrorCode: Int32(numeric))
            #expect(error.code.rdKafkaErrorCode == Int32(numeric), "\(numeric) -> \(error.code)")
            #expect(!(error.isFatal && error.isRetriable), "\(error.code)")
            #expect(error.rdKafkaErrorCode == Int32(numeric))
        }
    }

    @Test(arguments: [
        (Int32(-195), KafkaError.Code.transport, false, true),
        (-187, .allBrokersDown, false, true),
        (-192, .messageTimedOut, false, true),
        (-184, .queueFull, false, true),
        (6, .notLeaderForPartition, false, true),
        (7, .requestTimedOut, false, true),
        (3, .unknownTopicOrPartition, false, true),
        (27, .rebalanceInProgress, false, true),
        (29, .topicAuthorizationFailed, true, false),
        (30, .groupAuthorizationFailed, true, false),
        (-150, .fatal, true, false),
        (10, .messageSizeTooLarge, false, false),
        (1, .offsetOutOfRange, false, false),
    ])
    func classification(numeric: Int32, code: KafkaError.Code, fatal: Bool, retriable: Bool) {
        let error = KafkaError(rdKafkaErrorCode: numeric)
        #expect(error.code == code)
        #expect(error.isFatal == fatal)
        #expect(error.isRetriable == retriable)
    }

    @Test func wrapperCodesAreNotLibrdkafkaCodes() {
        #expect(KafkaError.Code.closed.rdKafkaErrorCode == nil)
        #expect(KafkaError.Code.invalidConfiguration.rdKafkaErrorCode == nil)
        #expect(KafkaError(code: .invalidConfiguration, reason: "x").isFatal)
        #expect(!KafkaError(code: .closed, reason: "x").isRetriable)
    }

    @Test func descriptionIsTerse() {
        let error = KafkaError(rdKafkaErrorCode: -195, reason: "broker gone")
        #expect(error.description == "KafkaError(_TRANSPORT, retriable): broker gone")
    }

    @Test func invalidPropertyIsATypedError() throws {
        var configuration = KafkaConfiguration(["no.such.property": "1"])
        configuration.bootstrapServers = "127.0.0.1:1"
        let error = try #require(throws: KafkaError.self) { try KafkaProducer(configuration: configuration) }
        #expect(error.code == .invalidConfiguration)
        #expect(error.isFatal)
        #expect(error.reason.contains("no.such.property"))

        let badValue = try #require(throws: KafkaError.self) {
            try KafkaConsumer(configuration: KafkaConfiguration(["fetch.wait.max.ms": "not-a-number"]))
        }
        #expect(badValue.code == .invalidConfiguration)
    }

    @Test func typedHelpersWriteLibrdkafkaProperties() {
        var configuration = KafkaConfiguration()
        configuration.bootstrapServers = "a:1,b:2"
        configuration.groupID = "g"
        configuration.enableAutoCommit = false
        configuration.enableAutoOffsetStore = true
        configuration.autoOffsetReset = .earliest
        configuration.messageTimeout = .milliseconds(1500)
        configuration.reconnectBackoff = .milliseconds(5) ... .seconds(2)
        #expect(configuration.properties == [
            "bootstrap.servers": "a:1,b:2", "group.id": "g", "enable.auto.commit": "false",
            "enable.auto.offset.store": "true", "auto.offset.reset": "earliest", "message.timeout.ms": "1500",
            "reconnect.backoff.ms": "5", "reconnect.backoff.max.ms": "2000",
        ])
        #expect(configuration.messageTimeout == .milliseconds(1500))
        #expect(configuration.reconnectBackoff == .milliseconds(5) ... .milliseconds(2000))
        #expect(configuration.autoOffsetReset == .earliest)
        configuration.groupID = nil
        #expect(configuration["group.id"] == nil)
    }
}
