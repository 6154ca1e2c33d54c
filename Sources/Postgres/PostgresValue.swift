/// A Swift value that can be sent as a text-format query parameter.
public protocol PostgresEncodable: Sendable {
    /// The value in PostgreSQL's text input format.
    var postgresText: String { get }
}

/// A Swift value that can be decoded from PostgreSQL's text output format.
public protocol PostgresDecodable {
    /// Decodes a non-NULL value.
    /// - Throws: `.decoding` when the text is not a valid value of this type.
    init(postgresText: String) throws(PostgresError)

    /// The value for SQL NULL. The default throws `.decoding`; `Optional` returns `nil`.
    static func postgresNull() throws(PostgresError) -> Self
}

extension PostgresDecodable {
    /// Throws `.decoding`: a non-optional type has no value for NULL.
    public static func postgresNull() throws(PostgresError) -> Self {
        throw PostgresError(code: .decoding, message: "unexpected NULL for non-optional \(Self.self)")
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    /// Decodes the wrapped value.
    public init(postgresText: String) throws(PostgresError) {
        self = .some(try Wrapped(postgresText: postgresText))
    }

    /// NULL decodes as `nil`.
    public static func postgresNull() throws(PostgresError) -> Wrapped? { nil }
}

private func decodingError(_ type: Any.Type) -> PostgresError {
    PostgresError(code: .decoding, message: "value is not a valid \(type)")
}

extension String: PostgresEncodable, PostgresDecodable {
    /// The value as PostgreSQL text input.
    public var postgresText: String { self }
    /// Any text is a valid string.
    public init(postgresText: String) { self = postgresText }
}

extension Int: PostgresEncodable, PostgresDecodable {
    /// The value as PostgreSQL text input.
    public var postgresText: String { String(self) }
    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int(postgresText) else { throw decodingError(Int.self) }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    /// The value as PostgreSQL text input.
    public var postgresText: String { String(self) }
    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int64(postgresText) else { throw decodingError(Int64.self) }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    /// The value as PostgreSQL text input.
    public var postgresText: String { String(self) }
    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int32(postgresText) else { throw decodingError(Int32.self) }
        self = value
    }
}

extension Int16: PostgresEncodable, PostgresDecodable {
    /// The value as PostgreSQL text input.
    public var postgresText: String { String(self) }
    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int16(postgresText) else { throw decodingError(Int16.self) }
        self = value
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    /// `t` or `f`.
    public var postgresText: String { self ? "t" : "f" }
    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "t", "true", "TRUE", "on", "1", "yes": self = true
        case "f", "false", "FALSE", "off", "0", "no": self = false
        default: throw decodingError(Bool.self)
        }
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    /// Swift's shortest round-tripping representation; PostgreSQL's float8 input accepts it, as well as
    /// `NaN`, `Infinity` and `-Infinity`.
    public var postgresText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return String(self)
    }

    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default:
            guard let value = Double(postgresText) else { throw decodingError(Double.self) }
            self = value
        }
    }
}

/// `bytea` values, sent and received in the hex format (`\x0a1b…`).
extension Array: PostgresEncodable where Element == UInt8 {
    /// `\x` followed by two lowercase hex digits per byte.
    public var postgresText: String {
        let digits = Array<UInt8>("0123456789abcdef".utf8)
        var text: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        text.reserveCapacity(2 + count * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

extension Array: PostgresDecodable where Element == UInt8 {
    /// Parses PostgreSQL\'s text output; throws `.decoding` when malformed.
    public init(postgresText: String) throws(PostgresError) {
        let utf8 = Array<UInt8>(postgresText.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0
        else {
            throw PostgresError(code: .decoding, message: "bytea value is not in hex format")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            guard let high = Self.hexNibble(utf8[index]), let low = Self.hexNibble(utf8[index + 1]) else {
                throw PostgresError(code: .decoding, message: "bytea value has a non-hex digit")
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        self = bytes
    }

    private static func hexNibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
