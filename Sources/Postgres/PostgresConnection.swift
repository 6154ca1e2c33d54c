import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One libpq connection (`PGconn`), with a blocking API.
///
/// Not thread-safe: a connection has a single owner at a time (libpq forbids concurrent use of one `PGconn`).
/// For async code use `AsyncPostgresConnection`, which confines a connection to its own thread.
public final class PostgresConnection {
    /// The settings this connection was opened with.
    public let configuration: PostgresConfiguration

    /// The libpq handle; nil once closed. Owned exclusively by this object and freed by `close()`/`deinit`.
    private var handle: OpaquePointer?
    /// Nesting depth of `transaction` calls; inner levels use savepoints.
    private var transactionDepth = 0
    /// Server-side names of the statements prepared on this connection, by SQL text.
    private var preparedNames: [String: String] = [:]
    /// Numbers the prepared statements; never reused, so a name the server may still hold is never prepared twice.
    private var preparedCount = 0

    private init(configuration: PostgresConfiguration, handle: OpaquePointer) {
        self.configuration = configuration
        self.handle = handle
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Opens a connection with `PQconnectdbParams` (keyword/value arrays, so no value needs escaping).
    ///
    /// Sets `client_encoding=UTF8` and, unless the options say otherwise, `connect_timeout=10`.
    /// - Throws: `.connectionFailed` (server down, unknown database, …) or `.authenticationFailed` (wrong password,
    ///   unknown role), with a one-line message.
    public static func connect(_ configuration: PostgresConfiguration) throws(PostgresError) -> PostgresConnection {
        var parameters: [(String, String)] = [
            ("host", configuration.host),
            ("port", String(configuration.port)),
            ("user", configuration.user),
            ("dbname", configuration.database),
            ("client_encoding", "UTF8"),
        ]
        if let password = configuration.password { parameters.append(("password", password)) }
        if configuration.options["connect_timeout"] == nil { parameters.append(("connect_timeout", "10")) }
        for (key, value) in configuration.options.sorted(by: { $0.key < $1.key }) where key != "client_encoding" {
            parameters.append((key, value))
        }

        let handle = CStringArray(parameters.map(\.0)).withPointers { keywords in
            CStringArray(parameters.map(\.1)).withPointers { values in
                // expand_dbname = 0: the database name is only ever a name, never a conninfo string.
                PQconnectdbParams(keywords, values, 0)
            }
        }
        guard let handle else {
            throw PostgresError(code: .connectionFailed, message: "out of memory while allocating a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let raw = PQerrorMessage(handle).map { String(cString: $0) } ?? ""
            PQfinish(handle)
            throw ConnectionFailure.classify(raw, configuration: configuration)
        }
        return PostgresConnection(configuration: configuration, handle: handle)
    }

    /// Closes the connection. Later calls throw `.connectionClosed`. Calling it twice is harmless.
    public func close() {
        if let handle { PQfinish(handle) }
        handle = nil
    }

    /// Whether the connection is open and libpq considers it healthy.
    public var isConnected: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// The server process ID serving this connection (`PQbackendPID`), 0 when closed.
    public var backendProcessID: Int32 {
        guard let handle else { return 0 }
        return PQbackendPID(handle)
    }

    func liveHandle() throws(PostgresError) -> OpaquePointer {
        guard let handle else {
            throw PostgresError(code: .connectionClosed, message: "connection is closed")
        }
        return handle
    }

    /// The handle, after checking that `sql` can be passed as a C string: an embedded NUL would silently cut
    /// the statement short.
    func liveHandle(for sql: String) throws(PostgresError) -> OpaquePointer {
        let handle = try liveHandle()
        guard !sql.utf8.contains(0) else {
            throw PostgresError(code: .server, message: "SQL text contains a NUL character", query: sql)
        }
        return handle
    }

    // MARK: Statements

    /// Runs one statement through `PQexecParams` with text-format parameters `$1, $2, …`.
    ///
    /// Values are never interpolated into the SQL; `nil` is SQL NULL.
    /// - Throws: `.server` with the SQLSTATE when the statement fails; `.connectionClosed` when the connection is
    ///   gone; `.copyFailed` when the statement is a COPY (use `copyFrom`/`copyTo`).
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws(PostgresError)
        -> PostgresResult
    {
        let handle = try liveHandle(for: sql)
        let texts = try Self.parameterTexts(parameters, sql: sql)
        let result = CStringArray(texts).withPointers { values in
            PQexecParams(handle, sql, Int32(texts.count), nil, values, nil, nil, 0)
        }
        return try consume(result, sql: sql)
    }

    /// Runs `statement` as a named prepared statement of this connection, preparing it on first use: later runs
    /// skip parsing and, once PostgreSQL settles on a generic plan (after five runs, when that plan is not
    /// estimated costlier), planning. For frequent statements whose planning costs as much as their execution,
    /// and whose best plan does not depend on the parameters' values or on tables whose size swings: a generic
    /// plan is kept until a table it reads is altered or analysed.
    ///
    /// A statement the server no longer knows (after `DEALLOCATE ALL` or `DISCARD ALL`) is prepared again and,
    /// outside a transaction block, run again at once; inside one the error is thrown, as the block is aborted.
    /// Not for use through a pooler that moves sessions between server connections per transaction.
    /// - Throws: as ``query(_:_:)``.
    @discardableResult
    public func query(_ statement: PreparedStatement, _ parameters: [(any PostgresEncodable)?] = [])
        throws(PostgresError) -> PostgresResult
    {
        let sql = statement.sql
        let handle = try liveHandle(for: sql)
        let texts = try Self.parameterTexts(parameters, sql: sql)
        do {
            return try executePrepared(sql, texts, on: handle)
        } catch where error.isStalePreparedStatement && PQtransactionStatus(handle) == PQTRANS_IDLE {
            return try executePrepared(sql, texts, on: handle)
        }
    }

    private func executePrepared(_ sql: String, _ texts: [String?], on handle: OpaquePointer) throws(PostgresError)
        -> PostgresResult
    {
        let name = try preparedName(for: sql, on: handle)
        let result = CStringArray(texts).withPointers { values in
            PQexecPrepared(handle, name, Int32(texts.count), values, nil, nil, 0)
        }
        do {
            return try consume(result, sql: sql)
        } catch {
            if error.isStalePreparedStatement { preparedNames[sql] = nil }
            throw error
        }
    }

    private func preparedName(for sql: String, on handle: OpaquePointer) throws(PostgresError) -> String {
        if let name = preparedNames[sql] { return name }
        preparedCount += 1
        let name = "explore_statement_\(preparedCount)"
        try consume(PQprepare(handle, name, sql, 0, nil), sql: sql)
        preparedNames[sql] = name
        return name
    }

    /// The parameters in text format, checked: the protocol counts them in 16 bits, and C strings end at a NUL.
    private static func parameterTexts(_ parameters: [(any PostgresEncodable)?], sql: String) throws(PostgresError)
        -> [String?]
    {
        guard parameters.count <= Int(UInt16.max) else {
            throw PostgresError(
                code: .server, message: "\(parameters.count) parameters; the maximum is \(UInt16.max)", query: sql)
        }
        let texts: [String?] = parameters.map { $0?.postgresText }
        for text in texts where text?.utf8.contains(0) == true {
            throw PostgresError(code: .server, message: "query parameter contains a NUL character", query: sql)
        }
        return texts
    }

    /// Runs a script of one or more statements without parameters (`PQexec`), e.g. a migration file.
    /// Statements run in one implicit transaction unless the script contains its own transaction control.
    /// - Throws: `.server` for the first failing statement.
    public func executeScript(_ sql: String) throws(PostgresError) {
        let handle = try liveHandle(for: sql)
        try consume(PQexec(handle, sql), sql: sql)
    }

    /// Sends `NOTIFY channel, payload` through `pg_notify`, so neither needs quoting.
    public func notify(_ channel: String, payload: String = "") throws(PostgresError) {
        try query("SELECT pg_notify($1, $2)", [channel, payload])
    }

    /// Turns a `PGresult` into a `PostgresResult` or an error, freeing it in every case.
    @discardableResult
    private func consume(_ result: OpaquePointer?, sql: String) throws(PostgresError) -> PostgresResult {
        let handle = try liveHandle()
        guard let result else { throw connectionError(handle, sql: sql) }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            return Self.copyResult(result)
        case PGRES_COPY_IN:
            _ = PQputCopyEnd(handle, "COPY must be run with copyFrom")
            drainResults(handle)
            throw PostgresError(
                code: .copyFailed, message: "COPY FROM STDIN must be run with copyFrom", query: sql)
        case PGRES_COPY_OUT:
            drainCopyOut(handle)
            throw PostgresError(code: .copyFailed, message: "COPY TO STDOUT must be run with copyTo", query: sql)
        default:
            throw Self.serverError(result, handle: handle, sql: sql)
        }
    }

    static func copyResult(_ result: OpaquePointer) -> PostgresResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        var columns: [String] = []
        columns.reserveCapacity(columnCount)
        for column in 0..<columnCount {
            columns.append(PQfname(result, Int32(column)).map { String(cString: $0) } ?? "")
        }
        var values: [String?] = []
        values.reserveCapacity(rowCount * columnCount)
        for row in 0..<Int32(rowCount) {
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) != 0 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, row, column))
                    let pointer = UnsafeRawPointer(PQgetvalue(result, row, column)!)
                    let bytes = UnsafeRawBufferPointer(start: pointer, count: length)
                    values.append(String(decoding: bytes, as: UTF8.self))
                }
            }
        }
        let tag = PQcmdStatus(result).map { String(cString: $0) } ?? ""
        let affected = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
        return PostgresResult(
            columns: columns, values: values, rowCount: rowCount, affectedRows: affected, commandTag: tag)
    }

    /// The error of a failed `PGresult`, with SQLSTATE, detail and hint from the diagnostic fields.
    static func serverError(_ result: OpaquePointer, handle: OpaquePointer, sql: String?) -> PostgresError {
        func field(_ code: Character) -> String? {
            PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
        }
        let sqlState = field("C")
        guard let primary = field("M") else {
            // No diagnostic fields: the failure happened in libpq (typically the connection broke).
            return connectionError(handle, sql: sql)
        }
        // A FATAL error (e.g. 57P01 after pg_terminate_backend) also ends the session: callers must reconnect.
        let code: PostgresError.Code = PQstatus(handle) == CONNECTION_OK ? .server : .connectionClosed
        return PostgresError(
            code: code, message: primary, sqlState: sqlState, detail: field("D"), hint: field("H"), query: sql)
    }

    func connectionError(_ handle: OpaquePointer, sql: String?) -> PostgresError {
        Self.connectionError(handle, sql: sql)
    }

    static func connectionError(_ handle: OpaquePointer, sql: String?) -> PostgresError {
        let raw = PQerrorMessage(handle).map { String(cString: $0) } ?? ""
        let message = PostgresError.firstLine(of: raw)
        if PQstatus(handle) != CONNECTION_OK {
            return PostgresError(
                code: .connectionClosed,
                message: message.isEmpty ? "connection to the server was lost" : message, query: sql)
        }
        return PostgresError(code: .server, message: message.isEmpty ? "statement failed" : message, query: sql)
    }

    /// Reads and frees all pending results so the connection is ready for the next command.
    func drainResults(_ handle: OpaquePointer) {
        while let result = PQgetResult(handle) {
            PQclear(result)
        }
    }

    private func drainCopyOut(_ handle: OpaquePointer) {
        var buffer: UnsafeMutablePointer<CChar>?
        while PQgetCopyData(handle, &buffer, 0) > 0 {
            PQfreemem(buffer)
            buffer = nil
        }
        drainResults(handle)
    }

    // MARK: Transactions

    /// Runs `body` inside `BEGIN … COMMIT`; rolls back and rethrows when `body` throws.
    ///
    /// Nested calls use a savepoint, so an inner failure only undoes the inner part.
    /// - Throws: the body's error, or a `PostgresError` from BEGIN/COMMIT.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        let savepoint = transactionDepth == 0 ? nil : "explore_savepoint_\(transactionDepth)"
        try executeScript(savepoint.map { "SAVEPOINT \($0)" } ?? "BEGIN")
        transactionDepth += 1
        defer { transactionDepth -= 1 }
        let value: T
        do {
            value = try body()
        } catch {
            // The body's error matters more than a failing rollback (e.g. on a broken connection).
            try? executeScript(savepoint.map { "ROLLBACK TO SAVEPOINT \($0); RELEASE SAVEPOINT \($0)" } ?? "ROLLBACK")
            throw error
        }
        if let savepoint {
            try executeScript("RELEASE SAVEPOINT \(savepoint)")
        } else {
            // COMMIT of a transaction in which a statement failed (and the body swallowed the error) is answered
            // with the tag ROLLBACK and no error; report it, so a lost transaction never looks committed.
            let commit = try query("COMMIT")
            if commit.commandTag == "ROLLBACK" {
                throw PostgresError(
                    code: .server, message: "transaction was rolled back because a statement in it failed",
                    query: "COMMIT")
            }
        }
        return value
    }
}

/// Classifies a failed connection attempt into one clear line and the right code.
enum ConnectionFailure {
    static func classify(_ raw: String, configuration: PostgresConfiguration) -> PostgresError {
        // libpq reports `connection to server at "host" (addr), port N failed: FATAL:  <server message>` or
        // `...failed: Connection refused\n\tIs the server running...`; keep the part after "failed: ".
        var reason = Substring(raw)
        if let range = raw.firstRange(of: "failed: ") { reason = raw[range.upperBound...] }
        for prefix in ["FATAL:  ", "ERROR:  "] where reason.hasPrefix(prefix) {
            reason = reason.dropFirst(prefix.count)
        }
        let line = PostgresError.firstLine(of: String(reason))
        let target = "\(configuration.host):\(configuration.port)"
        let lower = line.lowercased()

        if lower.contains("password authentication failed") || lower.contains("no password supplied") {
            return PostgresError(
                code: .authenticationFailed, message: "\(line) (server \(target))", sqlState: "28P01")
        }
        if lower.hasPrefix("role ") && lower.contains("does not exist") {
            return PostgresError(
                code: .authenticationFailed, message: "\(line) (server \(target))", sqlState: "28000")
        }
        if lower.contains("authentication failed") || lower.contains("no pg_hba.conf entry") {
            return PostgresError(
                code: .authenticationFailed, message: "\(line) (server \(target))", sqlState: "28000")
        }
        if lower.hasPrefix("database ") && lower.contains("does not exist") {
            return PostgresError(
                code: .connectionFailed, message: "\(line) (server \(target))", sqlState: "3D000")
        }
        if lower.contains("timeout expired") {
            return PostgresError(code: .timeout, message: "could not connect to \(target): timeout expired")
        }
        if lower.contains("connection refused") {
            return PostgresError(
                code: .connectionFailed,
                message: "could not connect to \(target): connection refused (is the server running?)")
        }
        return PostgresError(
            code: .connectionFailed,
            message: "could not connect to \(target): " + (line.isEmpty ? "unknown error" : line))
    }
}

/// NUL-terminated copies of Swift strings, alive for the duration of `withPointers`.
struct CStringArray {
    private let strings: [String?]

    init(_ strings: [String?]) { self.strings = strings }
    init(_ strings: [String]) { self.strings = strings }

    /// Passes a NULL-terminated `const char * const *` array; nil entries stay NULL (SQL NULL parameters).
    func withPointers<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { $0.flatMap { strdup($0) } }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return pointers.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
                body($0)
            }
        }
    }
}

extension PostgresError {
    /// The server no longer knows the prepared statement (26000, after `DEALLOCATE ALL` or `DISCARD ALL`), or
    /// refuses to run it because its result columns changed under it (0A000, a table it reads was replaced).
    fileprivate var isStalePreparedStatement: Bool { sqlState == "26000" || sqlState == "0A000" }
}

/// SQL text to be run as a prepared statement by `PostgresConnection.query(_:_:)`.
///
/// Each connection prepares a statement the first time it runs it and keeps it for its lifetime, so the text
/// should be a constant: every distinct text stays prepared on the server until the connection closes.
public struct PreparedStatement: Sendable, Hashable {
    /// The statement, with parameters `$1, $2, …`.
    public let sql: String

    /// Names `sql` as a statement to prepare.
    public init(_ sql: String) {
        self.sql = sql
    }
}
