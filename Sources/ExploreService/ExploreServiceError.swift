/// Why the service could not start or an admin operation failed; `message` is one line for the operator.
public struct ExploreServiceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable error code.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The code's name.
        public let name: String
        init(_ name: String) { self.name = name }

        /// PostgreSQL cannot be reached.
        public static let databaseUnavailable = Code("databaseUnavailable")
        /// The projection's tables do not exist: the migrations have not been applied.
        public static let notMigrated = Code("notMigrated")
        /// Building the projection or bootstrapping the cache failed.
        public static let projectionFailed = Code("projectionFailed")
        /// The server could not bind its address.
        public static let listenFailed = Code("listenFailed")
        /// A setting is invalid (for example a Kafka topic name); the message names it.
        public static let invalidConfiguration = Code("invalidConfiguration")

        /// The code's name.
        public var description: String { name }
    }

    /// The stable code.
    public var code: Code
    /// One line naming the cause and, where there is one, the fix.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
