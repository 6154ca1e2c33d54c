public import ExploreQuery

/// An error carried in an `ERROR` frame or raised by the codec, with a stable numeric code.
///
/// `description` is deliberately terse: it never echoes payload bytes.
public struct WireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable wire error codes (u16 on the wire). Codes 1…99 are the query core's ``QueryError/Code`` values.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        // 1…99: the query core's codes, numerically identical.
        public static let unknownField = Code(rawValue: 1)
        public static let invalidRange = Code(rawValue: 2)
        public static let limitOutOfRange = Code(rawValue: 3)
        public static let malformedCursor = Code(rawValue: 4)
        public static let cursorMismatch = Code(rawValue: 5)
        public static let invalidValue = Code(rawValue: 6)
        public static let offsetOutOfRange = Code(rawValue: 7)
        public static let disabled = Code(rawValue: 8)

        // 100…199: protocol violations.
        /// A frame's payload does not match its opcode's layout (truncated, trailing bytes, bad varint, bad UTF-8,
        /// unknown enum value). The connection stays open.
        public static let malformedFrame = Code(rawValue: 100)
        /// The opcode is not one this side understands. The connection stays open.
        public static let unknownOpcode = Code(rawValue: 101)
        /// Reserved flag bits were set. The connection stays open.
        public static let invalidFlags = Code(rawValue: 102)
        /// The declared frame length is 0 or above the maximum frame size. The connection is closed.
        public static let frameTooLarge = Code(rawValue: 103)
        /// The first frame was not a valid `HELLO` (wrong magic, wrong opcode). The connection is closed.
        public static let badHandshake = Code(rawValue: 104)
        /// No protocol version in the client's range is supported. The connection is closed.
        public static let unsupportedVersion = Code(rawValue: 105)
        /// A second `HELLO` on an established connection. The connection stays open.
        public static let duplicateHandshake = Code(rawValue: 106)

        // 200…299: authorisation.
        /// An admin operation without a valid admin token. The connection stays open.
        public static let unauthorized = Code(rawValue: 200)
        /// The server has no admin token or no admin handler configured.
        public static let adminUnavailable = Code(rawValue: 201)
        /// An admin operation ran and failed (for example PostgreSQL was unreachable); the message says why.
        /// The connection stays open.
        public static let adminFailed = Code(rawValue: 202)

        // 300…399: limits and lifecycle.
        /// The server is at its connection limit. The connection is closed.
        public static let tooManyConnections = Code(rawValue: 301)
        /// A `GET` asked for more ids than the server allows. The connection stays open.
        public static let tooManyIDs = Code(rawValue: 302)
        /// The connection was idle for longer than the idle timeout. The connection is closed.
        public static let idleTimeout = Code(rawValue: 303)
        /// The server is shutting down. The connection is closed.
        public static let shuttingDown = Code(rawValue: 304)

        // 400…: server faults.
        /// The server failed while handling the request. The connection stays open.
        public static let internalError = Code(rawValue: 400)

        /// Whether the peer must close the connection after sending an error with this code.
        public var closesConnection: Bool {
            switch self {
            case .frameTooLarge, .badHandshake, .unsupportedVersion, .tooManyConnections, .idleTimeout,
                 .shuttingDown: true
            default: false
            }
        }

        public var description: String {
            switch self {
            case .malformedFrame: "malformed_frame"
            case .unknownOpcode: "unknown_opcode"
            case .invalidFlags: "invalid_flags"
            case .frameTooLarge: "frame_too_large"
            case .badHandshake: "bad_handshake"
            case .unsupportedVersion: "unsupported_version"
            case .duplicateHandshake: "duplicate_handshake"
            case .unauthorized: "unauthorized"
            case .adminUnavailable: "admin_unavailable"
            case .adminFailed: "admin_failed"
            case .tooManyConnections: "too_many_connections"
            case .tooManyIDs: "too_many_ids"
            case .idleTimeout: "idle_timeout"
            case .shuttingDown: "shutting_down"
            case .internalError: "internal_error"
            default:
                if rawValue >= 1 && rawValue < 100 {
                    QueryError.Code(rawValue: rawValue).description
                } else {
                    "code_\(rawValue)"
                }
            }
        }
    }

    public var code: Code
    /// A one-line explanation; never contains payload bytes or secrets.
    public var message: String

    /// Creates an error with `code` and a one-line `message`.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code) (\(code.rawValue)): \(message)" }

    /// The single place where any error raised while serving a request becomes a wire error.
    ///
    /// Query errors keep their numeric code; wire errors pass through; anything else is an internal error whose
    /// message does not leak the underlying value.
    public init(mapping error: any Error) {
        switch error {
        case let wire as WireError:
            self = wire
        case let query as QueryError:
            self.init(Code(rawValue: query.code.rawValue), query.message)
        default:
            self.init(.internalError, "internal error while handling the request")
        }
    }

    /// The query-core error this wire error stands for, when its code is in the query range (1…99).
    public var queryError: QueryError? {
        guard code.rawValue >= 1 && code.rawValue < 100 else { return nil }
        return QueryError(QueryError.Code(rawValue: code.rawValue), message)
    }
}
