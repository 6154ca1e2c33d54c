import ArgumentParser
import KafkaFeed

/// `serve`'s choice of change feed and the Kafka feed's settings.
struct FeedOptions: ParsableArguments {
    /// The change feeds `serve` can follow.
    enum Feed: String, ExpressibleByArgument, CaseIterable {
        case outbox
        case kafka
    }

    @Option(help: ArgumentHelp(
        "Change feed keeping the projection current: outbox or kafka.",
        discussion: "outbox follows explore.change_outbox (filled by the base-table triggers); kafka follows a "
            + "topic of Debezium or {\"table\", \"id\"} change events and needs --kafka-brokers and --kafka-topic."))
    var feed: Feed = .outbox
    @Option(help: "Kafka bootstrap servers, host:port[,host:port...] (with --feed kafka).")
    var kafkaBrokers: String?
    @Option(help: "Topic of change events, all partitions consumed (with --feed kafka).")
    var kafkaTopic: String?
    @Option(help: "Consumer group the feed commits offsets to, for lag tooling (default explore-projector).")
    var kafkaGroup: String?
    @Option(help: "Topic receiving rejected events, with headers naming the reason and the original position.")
    var kafkaDeadLetterTopic: String?
    @Option(help: ArgumentHelp("Extra librdkafka property, key=value; repeatable.",
                               discussion: "For example security.protocol=ssl or fetch.wait.max.ms=10."))
    var kafkaProperty: [String] = []

    func validate() throws {
        let kafkaOptionsGiven = kafkaBrokers != nil || kafkaTopic != nil || kafkaGroup != nil
            || kafkaDeadLetterTopic != nil || !kafkaProperty.isEmpty
        switch feed {
        case .outbox:
            guard !kafkaOptionsGiven else {
                throw ValidationError("--kafka-* options need --feed kafka")
            }
        case .kafka:
            _ = try kafkaConfiguration()
        }
    }

    /// The Kafka feed's configuration with `--feed kafka`, nil with `--feed outbox`.
    /// - Throws: `ValidationError` naming the missing or invalid option.
    func kafkaConfiguration() throws -> KafkaFeedConfiguration? {
        guard feed == .kafka else { return nil }
        guard let kafkaBrokers else { throw ValidationError("--feed kafka needs --kafka-brokers HOST:PORT[,...]") }
        guard let kafkaTopic else { throw ValidationError("--feed kafka needs --kafka-topic NAME") }
        var properties: [String: String] = [:]
        for item in kafkaProperty {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw ValidationError("--kafka-property must be key=value, got '\(item)'")
            }
            let key = String(item[..<equals])
            guard properties[key] == nil else { throw ValidationError("--kafka-property \(key) is given twice") }
            properties[key] = String(item[item.index(after: equals)...])
        }
        let configuration = KafkaFeedConfiguration(
            brokers: kafkaBrokers, topic: kafkaTopic, group: kafkaGroup ?? "explore-projector",
            deadLetterTopic: kafkaDeadLetterTopic, properties: properties)
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.message)
        }
        return configuration
    }
}
