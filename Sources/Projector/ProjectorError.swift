public import Postgres

/// An error of the projector, with a stable code; `description` is terse, `debugDescription` has the cause.
public struct ProjectorError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The stable name of the code.
        public let name: String
        private init(_ name: String) { self.name = name }

        /// A snapshot text (`xmin:xmax:xip,…`) could not be parsed.
        public static let invalidSnapshot = Code("invalidSnapshot")
        /// A row read from PostgreSQL does not have the shape the projection expects.
        public static let invalidRow = Code("invalidRow")
        /// The checkpoint in the database is not the one this projector last wrote: another projector ran.
        public static let checkpointConflict = Code("checkpointConflict")
        /// Another projector holds the feed's lock.
        public static let feedLocked = Code("feedLocked")
        /// The projection has no checkpoint yet (it was never built).
        public static let notBuilt = Code("notBuilt")
        /// A PostgreSQL call failed; `underlying` holds the cause.
        public static let database = Code("database")
        /// A full rebuild is already running.
        public static let rebuildInProgress = Code("rebuildInProgress")
        /// A full rebuild failed; the message says why and whether the live table changed.
        public static let rebuildFailed = Code("rebuildFailed")
        /// The outbox feed cannot follow: capture triggers are switched off (see ``OutboxCapture``).
        public static let captureDisabled = Code("captureDisabled")
        /// The database lacks the migrations the projector needs (`explore-projector migrate up`).
        public static let notMigrated = Code("notMigrated")
        /// A fault injected by a test.
        public static let injectedFault = Code("injectedFault")

        /// The code's name.
        public var description: String { name }
    }

    /// What went wrong.
    public var code: Code
    /// One line for operators; never contains row payloads.
    public var message: String
    /// The PostgreSQL error behind a `.database` error.
    public var underlying: PostgresError?

    /// Creates an error.
    public init(code: Code, message: String, underlying: PostgresError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    /// The description plus the underlying PostgreSQL error in full.
    public var debugDescription: String {
        guard let underlying else { return description }
        return "\(description) (\(underlying.debugDescription))"
    }

    /// A `.database` error for `what`, keeping a PostgreSQL error as the underlying one; a `ProjectorError` is
    /// passed through unchanged.
    public static func database(_ what: String, _ error: any Error) -> ProjectorError {
        if let error = error as? ProjectorError { return error }
        let postgres = error as? PostgresError
        return ProjectorError(
            code: .database, message: "\(what): \(postgres?.description ?? String(describing: error))",
            underlying: postgres)
    }
}
