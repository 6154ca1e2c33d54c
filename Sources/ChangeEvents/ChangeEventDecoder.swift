/// Decodes Kafka records into ``SourceChange`` values.
///
/// Accepted envelopes:
/// - The Debezium PostgreSQL connector's JSON envelope, with or without the JSON converter's
///   `{"schema": ..., "payload": ...}` wrapper: `op` (`c`, `u`, `d`, `r`), `source.schema`, `source.table`,
///   `before`, `after`. The Kafka key (the row's primary key, same wrapper rules) becomes ``SourceChange/key``.
/// - A Debezium tombstone: a null value; the table comes from the topic name (`prefix.schema.table`) and the
///   key from the Kafka key.
/// - The minimal envelope `{"table": "schema.table", "id": <integer or string>}`.
///
/// Pure: no I/O, no global state. Every bad input throws ``ChangeEventError``.
public struct ChangeEventDecoder: Sendable {
    /// The nesting limit handed to the JSON parser.
    public var maximumDepth: Int

    /// Creates a decoder.
    public init(maximumDepth: Int = 64) {
        self.maximumDepth = maximumDepth
    }

    /// Decodes one record.
    ///
    /// - Parameters:
    ///   - key: the record's key bytes, or nil.
    ///   - value: the record's value bytes, or nil for a tombstone.
    ///   - topic: the topic, used to name the table of a tombstone.
    /// - Throws: ``ChangeEventError``.
    public func decode(
        key: [UInt8]?, value: [UInt8]?, topic: String? = nil
    ) throws(ChangeEventError) -> SourceChange {
        let keyColumns = try decodeKey(key)
        guard let value else { return try tombstone(key: keyColumns, topic: topic) }
        let document = try JSONValue(parsing: value, maximumDepth: maximumDepth)
        guard let unwrapped = unwrapConverterEnvelope(document) else {
            return try tombstone(key: keyColumns, topic: topic)
        }
        guard let envelope = unwrapped.objectValue else {
            throw ChangeEventError(code: .unknownEnvelope, reason: "the value is not a JSON object")
        }
        if envelope["op"] != nil {
            return try decodeDebezium(envelope, key: keyColumns)
        }
        if envelope["table"] != nil {
            return try decodeMinimal(envelope)
        }
        throw ChangeEventError(code: .unknownEnvelope, reason: "neither a Debezium envelope nor a minimal table/id one")
    }

    /// Strips the JSON converter's `{"schema", "payload"}` wrapper. Nil means the payload is null.
    private func unwrapConverterEnvelope(_ document: JSONValue) -> JSONValue? {
        guard let members = document.objectValue, members.count == 2,
            members["schema"] != nil, let payload = members["payload"]
        else { return document }
        return payload.isNull ? nil : payload
    }

    private func decodeKey(_ key: [UInt8]?) throws(ChangeEventError) -> [String: JSONValue] {
        guard let key else { return [:] }
        let document = try JSONValue(parsing: key, maximumDepth: maximumDepth)
        guard let unwrapped = unwrapConverterEnvelope(document) else { return [:] }
        guard let columns = unwrapped.objectValue else {
            throw ChangeEventError(code: .invalidField, field: "key", reason: "the key is not a JSON object")
        }
        return columns
    }

    private func tombstone(key: [String: JSONValue], topic: String?) throws(ChangeEventError) -> SourceChange {
        // Debezium names topics prefix.schema.table; a tombstone carries nothing else to name its table.
        guard let topic else {
            throw ChangeEventError(code: .missingField, field: "topic", reason: "a tombstone needs its topic")
        }
        let parts = topic.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, !parts[parts.count - 1].isEmpty, !parts[parts.count - 2].isEmpty else {
            throw ChangeEventError(
                code: .invalidField, field: "topic", reason: "a tombstone's topic must be prefix.schema.table")
        }
        guard !key.isEmpty else {
            throw ChangeEventError(code: .missingField, field: "key", reason: "a tombstone needs a key")
        }
        return SourceChange(
            table: "\(parts[parts.count - 2]).\(parts[parts.count - 1])", operation: .tombstone, key: key)
    }

    private func decodeDebezium(
        _ envelope: [String: JSONValue], key: [String: JSONValue]
    ) throws(ChangeEventError) -> SourceChange {
        guard case .string(let op) = envelope["op"] else {
            throw ChangeEventError(code: .invalidField, field: "op", reason: "op is not a string")
        }
        let operation: SourceChange.Operation
        switch op {
        case "c": operation = .create
        case "u": operation = .update
        case "d": operation = .delete
        case "r": operation = .snapshotRead
        default:
            throw ChangeEventError(code: .unsupportedOperation, field: "op", reason: "op \(op.prefix(8)) is not applied")
        }
        guard let sourceValue = envelope["source"], !sourceValue.isNull else {
            throw ChangeEventError(code: .missingField, field: "source", reason: "source is missing")
        }
        guard let source = sourceValue.objectValue else {
            throw ChangeEventError(code: .invalidField, field: "source", reason: "source is not an object")
        }
        let table = try nonEmptyString(source["table"], field: "source.table")
        var qualified = table
        if let schemaValue = source["schema"], !schemaValue.isNull {
            qualified = try nonEmptyString(schemaValue, field: "source.schema") + "." + table
        }
        let before = try rowImage(envelope["before"], field: "before")
        let after = try rowImage(envelope["after"], field: "after")
        switch operation {
        case .create, .update, .snapshotRead:
            guard after != nil else {
                throw ChangeEventError(code: .missingField, field: "after", reason: "op \(op) needs after")
            }
        case .delete:
            guard before != nil || !key.isEmpty else {
                throw ChangeEventError(code: .missingField, field: "before", reason: "a delete needs before or a key")
            }
        case .tombstone, .change:
            break
        }
        return SourceChange(table: qualified, operation: operation, key: key, before: before, after: after)
    }

    private func decodeMinimal(_ envelope: [String: JSONValue]) throws(ChangeEventError) -> SourceChange {
        let table = try nonEmptyString(envelope["table"], field: "table")
        guard let id = envelope["id"], !id.isNull else {
            throw ChangeEventError(code: .missingField, field: "id", reason: "id is missing")
        }
        switch id {
        case .integer: break
        case .string(let text) where !text.isEmpty: break
        default: throw ChangeEventError(code: .invalidField, field: "id", reason: "id must be an integer or a string")
        }
        return SourceChange(table: table, operation: .change, key: ["id": id])
    }

    private func nonEmptyString(_ value: JSONValue?, field: String) throws(ChangeEventError) -> String {
        guard let value, !value.isNull else {
            throw ChangeEventError(code: .missingField, field: field, reason: "\(field) is missing")
        }
        guard case .string(let text) = value, !text.isEmpty else {
            throw ChangeEventError(code: .invalidField, field: field, reason: "\(field) is not a non-empty string")
        }
        return text
    }

    private func rowImage(_ value: JSONValue?, field: String) throws(ChangeEventError) -> [String: JSONValue]? {
        guard let value, !value.isNull else { return nil }
        guard let row = value.objectValue else {
            throw ChangeEventError(code: .invalidField, field: field, reason: "\(field) is not an object or null")
        }
        return row
    }
}
