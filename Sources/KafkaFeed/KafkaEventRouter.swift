public import ChangeEvents
public import Kafka
import Projector

/// Why an event cannot be applied. Rejected events are counted, logged, dead-lettered when configured and
/// skipped: they never stall their partition.
public struct KafkaEventRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable code; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The stable name of the code.
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The value is not one well-formed JSON document.
        public static let malformedJSON = Code("malformedJSON")
        /// Well-formed JSON, but not an envelope the feed reads (wrong shape, missing or invalid envelope
        /// field, an operation such as a truncate that names no row).
        public static let invalidEnvelope = Code("invalidEnvelope")
        /// The event names a table the projection does not read.
        public static let unknownTable = Code("unknownTable")
        /// The event carries no value for the column that identifies the affected listing or location.
        public static let missingKey = Code("missingKey")
        /// That column holds something other than an integer id.
        public static let invalidKey = Code("invalidKey")

        /// The code's name.
        public var description: String { name }
    }

    /// The stable code.
    public var code: Code
    /// One line for operators and the dead-letter header; never contains payload bytes.
    public var reason: String

    /// Creates a rejection.
    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }

    /// `code: reason`.
    public var description: String { "\(code): \(reason)" }
}

/// Which listings and locations an event affects.
public struct AffectedKeys: Sendable, Hashable {
    /// Listing ids to recompute.
    public var listingIDs: [Int64]
    /// Locations whose listings must be recomputed.
    public var locationIDs: [Int64]

    /// Creates a key set.
    public init(listingIDs: [Int64] = [], locationIDs: [Int64] = []) {
        self.listingIDs = listingIDs
        self.locationIDs = locationIDs
    }
}

/// What the feed does with one Kafka message.
public enum RoutedEvent: Sendable, Hashable {
    /// Recompute these keys.
    case affected(AffectedKeys)
    /// Nothing to do (a tombstone: the delete before it already named the row).
    case ignored
    /// Skip it, count it and dead-letter it.
    case rejected(KafkaEventRejection)
}

/// Decodes Kafka messages (``ChangeEventDecoder``: Debezium or the minimal `{"table", "id"}` envelope) and maps
/// them with the projection definition to the keys a batch recomputes. Pure: no I/O.
///
/// Tables are accepted schema-qualified (`property.listings`) or bare (`listings`); other schemas are unknown.
/// Debezium events name the changed row; the key is found in the Kafka key, then the row after, then the row
/// before:
/// - `listings`: `id` is the listing; `locations`: `id` is the location (every listing there is recomputed);
/// - `developments`, `existing_properties`: `listing_id` (their primary key);
/// - `media`: `listing_id` from the row images (both, when an update moved a row between listings). Debezium
///   only sends it for deletes when the table has `REPLICA IDENTITY FULL`; a delete without it is rejected as
///   `missingKey` rather than silently ignored.
///
/// The minimal envelope's `id` is the key the outbox would record: the listing id for every table but
/// `locations`, whose `id` is the location id.
public struct KafkaEventRouter: Sendable {
    /// The schema of the base tables.
    public static let sourceSchema = "property"

    private let decoder: ChangeEventDecoder

    /// Creates a router.
    public init(decoder: ChangeEventDecoder = ChangeEventDecoder()) {
        self.decoder = decoder
    }

    /// Routes one message.
    public func route(_ message: KafkaMessage) -> RoutedEvent {
        // Tombstones follow deletes so that compaction can drop the key; the delete already named the row.
        guard message.value != nil else { return .ignored }
        let change: SourceChange
        do {
            change = try decoder.decode(key: message.key, value: message.value, topic: message.topic)
        } catch {
            let code: KafkaEventRejection.Code = error.code == .malformedJSON ? .malformedJSON : .invalidEnvelope
            return .rejected(KafkaEventRejection(code: code, reason: error.description))
        }
        do {
            return .affected(try affectedKeys(change))
        } catch {
            return .rejected(error)
        }
    }

    /// The keys a decoded change affects.
    /// - Throws: ``KafkaEventRejection`` for an unknown table or a missing or invalid key.
    public func affectedKeys(_ change: SourceChange) throws(KafkaEventRejection) -> AffectedKeys {
        if change.operation == .tombstone { return AffectedKeys() }
        let source = try Self.source(ofTable: change.table)
        let minimal = change.operation == .change
        switch source {
        case .locations:
            return AffectedKeys(locationIDs: [try Self.integer(change.value(ofColumn: "id"), column: "id")])
        case .listings:
            return AffectedKeys(listingIDs: [try Self.integer(change.value(ofColumn: "id"), column: "id")])
        case .developments, .existingProperties:
            let column = minimal ? "id" : "listing_id"
            return AffectedKeys(listingIDs: [try Self.integer(change.value(ofColumn: column), column: column)])
        case .media:
            if minimal {
                return AffectedKeys(listingIDs: [try Self.integer(change.value(ofColumn: "id"), column: "id")])
            }
            // A media row's key is its own id; the listing comes from the row images, both sides of a move.
            var ids: [Int64] = []
            for image in [change.after, change.before] {
                guard let value = image?["listing_id"], !value.isNull else { continue }
                let id = try Self.integer(value, column: "listing_id")
                if !ids.contains(id) { ids.append(id) }
            }
            guard !ids.isEmpty else {
                throw KafkaEventRejection(
                    code: .missingKey, reason: "a media event without listing_id in its row images "
                        + "(deletes need REPLICA IDENTITY FULL on property.media)")
            }
            return AffectedKeys(listingIDs: ids)
        }
    }

    /// The projection source for a table name, bare or qualified with ``sourceSchema``.
    /// - Throws: `.unknownTable` for any other table.
    static func source(ofTable table: String) throws(KafkaEventRejection) -> ProjectionDefinition.Source {
        var name = Substring(table)
        if let dot = table.firstIndex(of: ".") {
            guard table[..<dot] == sourceSchema else {
                throw KafkaEventRejection(code: .unknownTable, reason: "table \(table.prefix(120)) is not read")
            }
            name = table[table.index(after: dot)...]
        }
        guard let source = ProjectionDefinition.Source(rawValue: String(name)) else {
            throw KafkaEventRejection(code: .unknownTable, reason: "table \(table.prefix(120)) is not read")
        }
        return source
    }

    /// An id from a JSON integer or a decimal string (Debezium may send `bigint` either way).
    static func integer(_ value: JSONValue?, column: String) throws(KafkaEventRejection) -> Int64 {
        guard let value, !value.isNull else {
            throw KafkaEventRejection(code: .missingKey, reason: "no value for \(column)")
        }
        if let integer = value.integerValue { return integer }
        if let text = value.stringValue, let integer = Int64(text) { return integer }
        throw KafkaEventRejection(code: .invalidKey, reason: "\(column) is not an integer id")
    }
}
