/// A change event that could not be decoded. Raised for bad input, never a crash.
///
/// `description` names the code, the field and the byte offset, never the payload.
public struct ChangeEventError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable error code that can grow without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The stable name of the code.
        public let rawValue: String

        /// Creates a code from its stable name.
        public init(_ rawValue: String) { self.rawValue = rawValue }

        public var description: String { rawValue }

        /// The bytes are not one well-formed JSON document (syntax, UTF-8, nesting depth, trailing bytes).
        public static let malformedJSON = Code("malformedJSON")
        /// The JSON is well formed but neither a Debezium envelope nor the minimal `{"table", "id"}` one.
        public static let unknownEnvelope = Code("unknownEnvelope")
        /// A required field is absent (or null).
        public static let missingField = Code("missingField")
        /// A field has the wrong JSON type or an empty value.
        public static let invalidField = Code("invalidField")
        /// A Debezium operation this decoder does not apply (`t` truncate, `m` message, or unknown).
        public static let unsupportedOperation = Code("unsupportedOperation")
    }

    /// The stable code.
    public var code: Code
    /// The field concerned, as a dotted path (`payload.source.table`), when there is one.
    public var field: String?
    /// The byte offset in the input where JSON parsing failed, for `.malformedJSON`.
    public var byteOffset: Int?
    /// A short explanation, without payload contents.
    public var reason: String

    /// Creates an error.
    public init(code: Code, field: String? = nil, byteOffset: Int? = nil, reason: String) {
        self.code = code
        self.field = field
        self.byteOffset = byteOffset
        self.reason = reason
    }

    public var description: String {
        var text = "ChangeEventError(\(code)"
        if let field { text += ", field: \(field)" }
        if let byteOffset { text += ", at byte \(byteOffset)" }
        return text + "): \(reason)"
    }
}
