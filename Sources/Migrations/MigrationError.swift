/// An error of the migration tooling: a problem with the migration files, the history, the lock, or a migration
/// that failed. `description` is one line naming the cause and what to do.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    /// A stable error code; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The migrations directory does not exist or cannot be read.
        public static let directoryNotFound = Code("directoryNotFound")
        /// A file in the migrations directory is misnamed, duplicated, unpaired or unreadable.
        public static let invalidMigrationFile = Code("invalidMigrationFile")
        /// An applied migration's file changed since it was applied.
        public static let checksumDrift = Code("checksumDrift")
        /// An applied migration has no file any more.
        public static let missingFile = Code("missingFile")
        /// A pending migration sorts before an applied one (a file was inserted into the past).
        public static let outOfOrder = Code("outOfOrder")
        /// The requested target or step count makes no sense for this history.
        public static let invalidTarget = Code("invalidTarget")
        /// Another runner holds the migration lock for longer than the wait allows.
        public static let lockTimeout = Code("lockTimeout")
        /// A migration's SQL failed; its transaction was rolled back.
        public static let migrationFailed = Code("migrationFailed")
        /// The database could not be reached or a bookkeeping query failed.
        public static let database = Code("database")
        /// The live schema differs from what the migrations produce.
        public static let schemaDrift = Code("schemaDrift")
        /// Demo data could not be loaded.
        public static let seedFailed = Code("seedFailed")
    }

    public var code: Code
    /// One line: the cause and what to do.
    public var message: String
    /// The underlying error, if any (e.g. a `PostgresError`).
    public var underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }
}
