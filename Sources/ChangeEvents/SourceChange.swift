/// A change to one row of a source table, neutral to the envelope it arrived in.
///
/// Consumers use it to find the affected listings and recompute them from the source of truth, so the row
/// images are hints, never applied directly.
public struct SourceChange: Sendable, Hashable {
    /// What happened to the row.
    public enum Operation: String, Sendable, Hashable, CaseIterable {
        /// A row was inserted (Debezium `c`).
        case create
        /// A row was updated (Debezium `u`).
        case update
        /// A row was deleted (Debezium `d`).
        case delete
        /// A row was read by an initial snapshot (Debezium `r`).
        case snapshotRead
        /// A Kafka tombstone (null value) that follows a delete so compaction can drop the key.
        case tombstone
        /// Something changed; the envelope does not say what (the minimal `{"table", "id"}` envelope).
        case change
    }

    /// The table, schema-qualified (`public.listings`) when the envelope names the schema.
    public var table: String
    /// What happened.
    public var operation: Operation
    /// The row's key columns (the Kafka key for Debezium, `id` for the minimal envelope); may be empty.
    public var key: [String: JSONValue]
    /// The row before the change, when the envelope carries it.
    public var before: [String: JSONValue]?
    /// The row after the change, when the envelope carries it.
    public var after: [String: JSONValue]?

    /// Creates a change.
    public init(
        table: String, operation: Operation, key: [String: JSONValue] = [:],
        before: [String: JSONValue]? = nil, after: [String: JSONValue]? = nil
    ) {
        self.table = table
        self.operation = operation
        self.key = key
        self.before = before
        self.after = after
    }

    /// A column's value from the key, else the row after, else the row before.
    public func value(ofColumn name: String) -> JSONValue? {
        key[name] ?? after?[name] ?? before?[name]
    }
}
