import Kafka

/// Shared settings that keep the mock-cluster tests snappy: short fetch waits and reconnect back-offs.
func consumerConfiguration(_ cluster: KafkaMockCluster, group: String? = nil) -> KafkaConfiguration {
    var configuration = KafkaConfiguration([
        "fetch.wait.max.ms": "10",
        "log_level": "2",
    ])
    configuration.bootstrapServers = cluster.bootstrapServers
    configuration.groupID = group
    configuration.autoOffsetReset = .earliest
    configuration.enableAutoCommit = false
    configuration.reconnectBackoff = .milliseconds(10) ... .milliseconds(200)
    return configuration
}

func producerConfiguration(_ cluster: KafkaMockCluster) -> KafkaConfiguration {
    var configuration = KafkaConfiguration(["linger.ms": "1", "log_level": "2"])
    configuration.bootstrapServers = cluster.bootstrapServers
    configuration.reconnectBackoff = .milliseconds(10) ... .milliseconds(200)
    return configuration
}

/// Reads exactly `count` messages (the suite's time limit bounds the wait).
func collect(_ count: Int, from consumer: KafkaConsumer) async throws -> [KafkaMessage] {
    var received: [KafkaMessage] = []
    guard count > 0 else { return received }
    for try await message in consumer.messages {
        received.append(message)
        if received.count == count { break }
    }
    return received
}

/// The first error on `errors` that satisfies `predicate`.
func firstError(
    in errors: AsyncStream<KafkaError>, where predicate: (KafkaError) -> Bool
) async -> KafkaError? {
    for await error in errors where predicate(error) { return error }
    return nil
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
