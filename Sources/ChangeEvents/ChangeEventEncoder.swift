/// Writes ``SourceChange`` values in the envelopes ``ChangeEventDecoder`` reads: for producing test and demo
/// events, and for round-trip tests of the decoder.
public struct ChangeEventEncoder: Sendable {
    /// Whether to wrap Debezium keys and values in the JSON converter's `{"schema", "payload"}` envelope.
    public var includesSchema: Bool

    /// Creates an encoder.
    public init(includesSchema: Bool = false) {
        self.includesSchema = includesSchema
    }

    /// The Debezium key bytes (the key columns), or nil when the change has no key columns.
    public func debeziumKey(_ change: SourceChange) -> [UInt8]? {
        guard !change.key.isEmpty else { return nil }
        return Array(wrap(.object(change.key)).jsonText.utf8)
    }

    /// The Debezium value bytes; nil for a tombstone. The table is split at its first dot into
    /// `source.schema` and `source.table`.
    ///
    /// - Precondition: the operation is not `.change` (use ``minimalValue(_:)`` for those).
    public func debeziumValue(_ change: SourceChange) -> [UInt8]? {
        let op: String
        switch change.operation {
        case .create: op = "c"
        case .update: op = "u"
        case .delete: op = "d"
        case .snapshotRead: op = "r"
        case .tombstone: return nil
        case .change: preconditionFailure("the minimal envelope carries .change")
        }
        var source: [String: JSONValue] = ["connector": .string("postgresql"), "db": .string("explore")]
        if let dot = change.table.firstIndex(of: ".") {
            source["schema"] = .string(String(change.table[..<dot]))
            source["table"] = .string(String(change.table[change.table.index(after: dot)...]))
        } else {
            source["table"] = .string(change.table)
        }
        let payload: JSONValue = .object([
            "op": .string(op),
            "source": .object(source),
            "before": change.before.map(JSONValue.object) ?? .null,
            "after": change.after.map(JSONValue.object) ?? .null,
            "ts_ms": .integer(0),
        ])
        return Array(wrap(payload).jsonText.utf8)
    }

    /// The minimal envelope `{"table": ..., "id": ...}` for a change whose key has an `id` column.
    public func minimalValue(_ change: SourceChange) -> [UInt8]? {
        guard let id = change.key["id"] else { return nil }
        return Array(JSONValue.object(["table": .string(change.table), "id": id]).jsonText.utf8)
    }

    private func wrap(_ payload: JSONValue) -> JSONValue {
        guard includesSchema else { return payload }
        // The schema's content is irrelevant to the decoder; a small struct schema keeps the shape honest.
        return .object(["schema": .object(["type": .string("struct"), "optional": .bool(false)]), "payload": payload])
    }
}
