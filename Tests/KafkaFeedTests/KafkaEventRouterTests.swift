import ChangeEvents
import Kafka
@testable import KafkaFeed
import Projector
import Testing

/// The router on every envelope, every source table and every kind of poison.
@Suite struct KafkaEventRouterTests {
    let router = KafkaEventRouter()
    let encoder = ChangeEventEncoder()

    func message(key: String? = nil, value: String?, topic: String = "dbz.property.listings") -> KafkaMessage {
        KafkaMessage(topic: topic, partition: 0, offset: 7, key: key.map { Array($0.utf8) },
                     value: value.map { Array($0.utf8) })
    }

    func debezium(_ change: SourceChange, schema: Bool = false) -> KafkaMessage {
        let encoder = ChangeEventEncoder(includesSchema: schema)
        return KafkaMessage(topic: "dbz", partition: 1, offset: 3, key: encoder.debeziumKey(change),
                            value: encoder.debeziumValue(change))
    }

    func rejection(_ routed: RoutedEvent) -> KafkaEventRejection.Code? {
        if case .rejected(let rejection) = routed { return rejection.code }
        return nil
    }

    @Test func debeziumEventsOfEveryTableMapToTheirKeys() {
        let cases: [(SourceChange, AffectedKeys)] = [
            (SourceChange(table: "property.listings", operation: .update, key: ["id": .integer(5)],
                          after: ["id": .integer(5), "title": .string("x")]), AffectedKeys(listingIDs: [5])),
            (SourceChange(table: "property.listings", operation: .delete, key: ["id": .integer(6)]),
             AffectedKeys(listingIDs: [6])),
            (SourceChange(table: "property.developments", operation: .create, key: ["listing_id": .integer(8)],
                          after: ["listing_id": .integer(8), "price_from": .integer(1)]), AffectedKeys(listingIDs: [8])),
            (SourceChange(table: "property.existing_properties", operation: .snapshotRead,
                          key: ["listing_id": .string("9")], after: ["listing_id": .string("9")]),
             AffectedKeys(listingIDs: [9])),
            (SourceChange(table: "property.media", operation: .update, key: ["id": .integer(100)],
                          before: ["id": .integer(100), "listing_id": .integer(3)],
                          after: ["id": .integer(100), "listing_id": .integer(4)]), AffectedKeys(listingIDs: [4, 3])),
            (SourceChange(table: "property.media", operation: .create, key: ["id": .integer(101)],
                          after: ["id": .integer(101), "listing_id": .integer(4)]), AffectedKeys(listingIDs: [4])),
            (SourceChange(table: "property.locations", operation: .update, key: ["id": .integer(2)],
                          after: ["id": .integer(2), "city": .string("Porto")]), AffectedKeys(locationIDs: [2])),
        ]
        for (change, expected) in cases {
            #expect(router.route(debezium(change)) == .affected(expected), "\(change.table) \(change.operation)")
            #expect(router.route(debezium(change, schema: true)) == .affected(expected), "wrapped \(change.table)")
        }
    }

    @Test func minimalEnvelopesUseTheOutboxKey() {
        #expect(router.route(message(value: #"{"table": "property.listings", "id": 12}"#))
            == .affected(AffectedKeys(listingIDs: [12])))
        #expect(router.route(message(value: #"{"table": "media", "id": "13"}"#))
            == .affected(AffectedKeys(listingIDs: [13])))
        #expect(router.route(message(value: #"{"table": "existing_properties", "id": 14}"#))
            == .affected(AffectedKeys(listingIDs: [14])))
        #expect(router.route(message(value: #"{"table": "locations", "id": 3}"#))
            == .affected(AffectedKeys(locationIDs: [3])))
    }

    @Test func tombstonesAreIgnored() {
        #expect(router.route(message(key: #"{"id": 5}"#, value: nil)) == .ignored)
        // Even one whose topic does not name a table: it carries nothing to apply.
        #expect(router.route(message(key: nil, value: nil, topic: "changes")) == .ignored)
    }

    @Test func everyKindOfPoisonIsATypedRejection() {
        #expect(rejection(router.route(message(value: "{not json"))) == .malformedJSON)
        #expect(rejection(router.route(message(value: ""))) == .malformedJSON)
        #expect(rejection(router.route(message(value: #"{"table": "property.listings", "id": 1"#))) == .malformedJSON)
        #expect(rejection(router.route(message(value: #"[1, 2]"#))) == .invalidEnvelope)
        #expect(rejection(router.route(message(value: #"{"hello": "world"}"#))) == .invalidEnvelope)
        #expect(rejection(router.route(message(value: #"{"op": "t", "source": {"table": "listings"}}"#)))
            == .invalidEnvelope)
        #expect(rejection(router.route(message(key: #"{"id": "x"}"#, value: "{}"))) == .invalidEnvelope)
        #expect(rejection(router.route(message(value: #"{"table": "property.users", "id": 1}"#))) == .unknownTable)
        #expect(rejection(router.route(message(value: #"{"table": "core.listings", "id": 1}"#))) == .unknownTable)
        #expect(rejection(router.route(message(value: #"{"table": "wizard.listing_drafts", "id": 1}"#)))
            == .unknownTable)
        #expect(rejection(router.route(message(value: #"{"table": "listings"}"#))) == .invalidEnvelope)
        #expect(rejection(router.route(message(value: #"{"table": "listings", "id": true}"#))) == .invalidEnvelope)
        #expect(rejection(router.route(message(value: #"{"table": "listings", "id": "abc"}"#))) == .invalidKey)
        // A Debezium update of a listing whose row images and key lack the id.
        let noID = SourceChange(table: "property.listings", operation: .update, after: ["title": .string("x")])
        #expect(rejection(router.route(debezium(noID))) == .missingKey)
        // A media delete without REPLICA IDENTITY FULL: only the media id is known.
        let mediaDelete = SourceChange(table: "property.media", operation: .delete, key: ["id": .integer(9)],
                                       before: ["id": .integer(9)])
        #expect(rejection(router.route(debezium(mediaDelete))) == .missingKey)
        let badListingID = SourceChange(table: "property.media", operation: .create, key: ["id": .integer(9)],
                                        after: ["id": .integer(9), "listing_id": .double(1.5)])
        #expect(rejection(router.route(debezium(badListingID))) == .invalidKey)
        let unknown = SourceChange(table: "public.accounts", operation: .create, key: ["id": .integer(1)],
                                   after: ["id": .integer(1)])
        #expect(rejection(router.route(debezium(unknown))) == .unknownTable)
    }

    @Test func rejectionsNeverCarryPayloadBytes() {
        let secret = "s3cr3t-payload"
        let routed = router.route(message(value: #"{"table": "property.\#(secret)", "id": 1} trailing"#))
        guard case .rejected(let rejection) = routed else {
            Issue.record("expected a rejection, got \(routed)")
            return
        }
        #expect(!rejection.reason.contains(secret))
    }
}

/// The batch: keys deduplicated, the highest offset per partition kept, the window and the size honoured.
@Suite struct KafkaFeedBatchTests {
    func message(_ partition: Int32, _ offset: Int64, topic: String = "t") -> KafkaMessage {
        KafkaMessage(topic: topic, partition: partition, offset: offset, key: nil, value: [])
    }

    @Test func keysAreRecomputedOnceAndOffsetsAreTheHighestPerPartition() {
        var batch = KafkaFeedBatch(configuration: .init(window: .milliseconds(5), maximumKeys: 100))
        #expect(batch.tick(now: 0) == .idle)
        #expect(batch.add(message(0, 10), routed: .affected(AffectedKeys(listingIDs: [3, 1])), now: 1_000)
            == .flushAt(nanoseconds: 5_001_000))
        _ = batch.add(message(1, 4), routed: .affected(AffectedKeys(listingIDs: [3], locationIDs: [2])), now: 2_000)
        _ = batch.add(message(0, 8), routed: .affected(AffectedKeys(listingIDs: [1])), now: 3_000)
        _ = batch.add(message(1, 5), routed: .ignored, now: 4_000)
        _ = batch.add(message(2, 0), routed: .rejected(KafkaEventRejection(code: .unknownTable, reason: "x")),
                      now: 5_000)
        #expect(batch.tick(now: 5_000_999) == .flushAt(nanoseconds: 5_001_000))
        #expect(batch.tick(now: 5_001_000) == .flushNow)
        let contents = batch.take()
        #expect(contents.listingIDs == [1, 3])
        #expect(contents.locationIDs == [2])
        #expect(contents.nextOffsets == [
            KafkaTopicPartition(topic: "t", partition: 0): 11, KafkaTopicPartition(topic: "t", partition: 1): 6,
            KafkaTopicPartition(topic: "t", partition: 2): 1,
        ])
        #expect(contents.events == 5 && contents.applicableEvents == 3)
        #expect(batch.take().isEmpty)
        #expect(batch.tick(now: 10_000_000) == .idle)
    }

    @Test func aFullBatchFlushesAtOnce() {
        var batch = KafkaFeedBatch(configuration: .init(window: .seconds(10), maximumKeys: 3))
        #expect(batch.add(message(0, 0), routed: .affected(AffectedKeys(listingIDs: [1, 2])), now: 0)
            != .flushNow)
        #expect(batch.add(message(0, 1), routed: .affected(AffectedKeys(listingIDs: [2])), now: 0) != .flushNow)
        #expect(batch.add(message(0, 2), routed: .affected(AffectedKeys(locationIDs: [2])), now: 0) == .flushNow)
    }

    @Test func aZeroWindowFlushesEveryMessage() {
        var batch = KafkaFeedBatch(configuration: .init(window: .zero, maximumKeys: 100))
        #expect(batch.add(message(0, 0), routed: .ignored, now: 42) == .flushNow)
        #expect(batch.take().nextOffsets == [KafkaTopicPartition(topic: "t", partition: 0): 1])
    }
}

/// Settings refused before any broker is contacted.
@Suite struct KafkaFeedConfigurationTests {
    @Test func invalidSettingsAreNamed() {
        func error(_ configuration: KafkaFeedConfiguration) -> String? {
            do {
                try configuration.validate()
                return nil
            } catch {
                return error.message
            }
        }
        #expect(error(KafkaFeedConfiguration(brokers: "127.0.0.1:9092", topic: "changes")) == nil)
        #expect(error(KafkaFeedConfiguration(brokers: "", topic: "changes"))?.contains("brokers") == true)
        #expect(error(KafkaFeedConfiguration(brokers: "a:1,", topic: "changes"))?.contains("brokers") == true)
        #expect(error(KafkaFeedConfiguration(brokers: "a:1", topic: "bad topic"))?.contains("topic") == true)
        #expect(error(KafkaFeedConfiguration(brokers: "a:1", topic: ""))?.contains("topic") == true)
        #expect(error(KafkaFeedConfiguration(brokers: "a:1", topic: "t", deadLetterTopic: "t"))?
            .contains("differ") == true)
        #expect(error(KafkaFeedConfiguration(brokers: "a:1", topic: "t", group: "")) != nil)
        #expect(error(KafkaFeedConfiguration(brokers: "a:1", topic: "t", properties: ["group.id": "x"]))?
            .contains("group.id") == true)
    }
}
