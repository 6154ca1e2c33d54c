/// librdkafka configuration properties, passed through unchanged (see librdkafka's CONFIGURATION.md).
///
/// Typed helpers cover the properties this project sets; anything else goes through the subscript.
public struct KafkaConfiguration: Sendable, Hashable {
    /// The raw properties, name to value.
    public var properties: [String: String]

    /// Creates a configuration from raw properties.
    public init(_ properties: [String: String] = [:]) {
        self.properties = properties
    }

    /// Reads or writes one property; nil removes it.
    public subscript(_ name: String) -> String? {
        get { properties[name] }
        set { properties[name] = newValue }
    }

    /// `bootstrap.servers`: comma-separated `host:port` list.
    public var bootstrapServers: String? {
        get { self["bootstrap.servers"] }
        set { self["bootstrap.servers"] = newValue }
    }

    /// `client.id`.
    public var clientID: String? {
        get { self["client.id"] }
        set { self["client.id"] = newValue }
    }

    /// `group.id`: required for group subscription and for committing offsets.
    public var groupID: String? {
        get { self["group.id"] }
        set { self["group.id"] = newValue }
    }

    /// `enable.auto.commit`.
    public var enableAutoCommit: Bool? {
        get { self["enable.auto.commit"].map { $0 == "true" } }
        set { self["enable.auto.commit"] = newValue.map { $0 ? "true" : "false" } }
    }

    /// `enable.auto.offset.store`: false means the application stores offsets explicitly.
    public var enableAutoOffsetStore: Bool? {
        get { self["enable.auto.offset.store"].map { $0 == "true" } }
        set { self["enable.auto.offset.store"] = newValue.map { $0 ? "true" : "false" } }
    }

    /// Where a consumer starts when it has no committed offset.
    public enum AutoOffsetReset: String, Sendable {
        /// The oldest message still in the partition.
        case earliest
        /// Only messages produced after the consumer starts.
        case latest
        /// Fail with an error instead of guessing.
        case error
    }

    /// `auto.offset.reset`.
    public var autoOffsetReset: AutoOffsetReset? {
        get { self["auto.offset.reset"].flatMap(AutoOffsetReset.init(rawValue:)) }
        set { self["auto.offset.reset"] = newValue?.rawValue }
    }

    /// `message.timeout.ms`: how long the producer keeps retrying one message.
    public var messageTimeout: Duration? {
        get { self["message.timeout.ms"].flatMap(Int.init).map { .milliseconds($0) } }
        set { self["message.timeout.ms"] = newValue.map { String($0.wholeMilliseconds) } }
    }

    /// `reconnect.backoff.ms` and `reconnect.backoff.max.ms`: the range of the reconnect back-off.
    public var reconnectBackoff: ClosedRange<Duration>? {
        get {
            guard let low = self["reconnect.backoff.ms"].flatMap(Int.init),
                let high = self["reconnect.backoff.max.ms"].flatMap(Int.init), low <= high
            else { return nil }
            return .milliseconds(low) ... .milliseconds(high)
        }
        set {
            self["reconnect.backoff.ms"] = newValue.map { String($0.lowerBound.wholeMilliseconds) }
            self["reconnect.backoff.max.ms"] = newValue.map { String($0.upperBound.wholeMilliseconds) }
        }
    }

    /// `enable.idempotence`: exactly-once per partition from the producer's side, ordering kept on retry.
    public var enableIdempotence: Bool? {
        get { self["enable.idempotence"].map { $0 == "true" } }
        set { self["enable.idempotence"] = newValue.map { $0 ? "true" : "false" } }
    }
}

extension Duration {
    /// The duration in whole milliseconds, rounded down.
    var wholeMilliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
