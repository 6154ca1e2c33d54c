/// An error raised by the PostgreSQL wrapper.
///
/// `description` is deliberately terse and safe to log: one line with the code, the SQLSTATE and the primary
/// message, never SQL text, parameter values or passwords. `debugDescription` adds everything known, including
/// the statement that failed.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// A stable, extensible error category. Compare with the static members (`error.code == .server`).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The stable name of the code, e.g. `"server"`.
        public let name: String

        private init(_ name: String) { self.name = name }

        /// The connection URL could not be parsed.
        public static let invalidURL = Code("invalidURL")
        /// The server could not be reached, or refused the connection for a reason other than credentials
        /// (e.g. connection refused, unknown database).
        public static let connectionFailed = Code("connectionFailed")
        /// The server rejected the credentials (wrong password, unknown role).
        public static let authenticationFailed = Code("authenticationFailed")
        /// A statement failed on the server; `sqlState` says why.
        public static let server = Code("server")
        /// A COPY could not be started, fed or finished.
        public static let copyFailed = Code("copyFailed")
        /// A value could not be decoded into the requested Swift type.
        public static let decoding = Code("decoding")
        /// An SQL identifier is empty, too long or contains NUL.
        public static let invalidIdentifier = Code("invalidIdentifier")
        /// The connection was closed (by `close()` or by the server).
        public static let connectionClosed = Code("connectionClosed")
        /// An operation did not finish in time.
        public static let timeout = Code("timeout")

        /// The code's stable name.
        public var description: String { name }
    }

    /// The error category.
    public var code: Code
    /// The five-character SQLSTATE reported by the server (e.g. `"42P01"`), when there is one.
    public var sqlState: String?
    /// The primary message: terse, without SQL, parameters or passwords.
    public var message: String
    /// The server's DETAIL field, if any.
    public var detail: String?
    /// The server's HINT field, if any.
    public var hint: String?
    /// The statement that failed, if known. Only shown in `debugDescription`.
    public var query: String?
    /// Where in the wrapper the error was raised (file:line), for debugging.
    public var location: String

    /// Creates an error.
    public init(
        code: Code, message: String, sqlState: String? = nil, detail: String? = nil, hint: String? = nil,
        query: String? = nil, file: StaticString = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.query = query
        self.location = "\(file):\(line)"
    }

    /// One safe-to-log line: code, SQLSTATE and the first line of the message.
    public var description: String {
        var text = "PostgresError.\(code.name)"
        if let sqlState { text += " (\(sqlState))" }
        text += ": " + Self.firstLine(of: message)
        return text
    }

    /// Every field, including detail, hint, the failing SQL and where the error was raised.
    public var debugDescription: String {
        var parts = ["code: \(code.name)"]
        if let sqlState { parts.append("sqlState: \(sqlState)") }
        parts.append("message: \(message)")
        if let detail { parts.append("detail: \(detail)") }
        if let hint { parts.append("hint: \(hint)") }
        if let query { parts.append("query: \(query)") }
        parts.append("at: \(location)")
        return "PostgresError(" + parts.joined(separator: ", ") + ")"
    }

    static func firstLine(of text: String) -> String {
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\t" }
        return String(trimmed.prefix { $0 != "\n" && $0 != "\r" })
    }
}
