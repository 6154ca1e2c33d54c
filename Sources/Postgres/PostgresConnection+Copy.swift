import CLibPQ

/// Feeds data to a running `COPY … FROM STDIN`, buffering it into chunks of about 64 KiB so libpq sees few,
/// large `PQputCopyData` calls.
///
/// Only valid inside the `copyFrom` body that handed it out.
public struct PostgresCopyWriter {
    /// Flush threshold; one COPY data message per chunk.
    public static let chunkSize = 64 * 1024

    private let handle: OpaquePointer
    private var buffer: [UInt8]
    /// Total bytes accepted so far, for callers that report progress.
    public private(set) var bytesWritten = 0

    init(handle: OpaquePointer) {
        self.handle = handle
        self.buffer = []
        buffer.reserveCapacity(Self.chunkSize)
    }

    /// Appends text (e.g. tab-separated rows ending in `\n`) in COPY text or CSV format.
    /// - Throws: `.copyFailed` when libpq cannot send a chunk.
    public mutating func write(_ text: String) throws(PostgresError) {
        buffer.append(contentsOf: text.utf8)
        bytesWritten += text.utf8.count
        if buffer.count >= Self.chunkSize { try flush() }
    }

    /// Appends one row in COPY text format: fields escaped, separated by tabs, ended by a newline.
    /// `nil` is SQL NULL (`\N`).
    public mutating func writeRow(_ fields: [String?]) throws(PostgresError) {
        var line = ""
        for (index, field) in fields.enumerated() {
            if index > 0 { line += "\t" }
            line += Self.textField(field)
        }
        line += "\n"
        try write(line)
    }

    /// Escapes a value for COPY text format: backslash, tab, newline and carriage return are backslash-escaped,
    /// and `nil` becomes `\N`.
    public static func textField(_ value: String?) -> String {
        guard let value else { return "\\N" }
        guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else {
            return value
        }
        var escaped = ""
        escaped.reserveCapacity(value.utf8.count + 8)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\t": escaped += "\\t"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// Appends raw bytes, e.g. binary COPY data.
    public mutating func write(bytes: [UInt8]) throws(PostgresError) {
        buffer.append(contentsOf: bytes)
        bytesWritten += bytes.count
        if buffer.count >= Self.chunkSize { try flush() }
    }

    /// Appends raw bytes from a buffer (copied before returning).
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(PostgresError) {
        buffer.append(contentsOf: bytes)
        bytesWritten += bytes.count
        if buffer.count >= Self.chunkSize { try flush() }
    }

    /// Sends whatever is buffered as one COPY data message.
    mutating func flush() throws(PostgresError) {
        guard !buffer.isEmpty else { return }
        let handle = handle
        let status = buffer.withUnsafeBytes { bytes in
            PQputCopyData(handle, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(bytes.count))
        }
        buffer.removeAll(keepingCapacity: true)
        guard status == 1 else {
            let detail = PQerrorMessage(handle).map { String(cString: $0) }
            throw PostgresError(
                code: .copyFailed, message: "could not send COPY data",
                detail: detail.map(PostgresError.firstLine(of:)))
        }
    }
}

extension PostgresConnection {
    /// Runs `COPY … FROM STDIN`; `body` writes the data through the writer, which sends it in ~64 KiB chunks.
    ///
    /// When `body` throws, the COPY is aborted (nothing is inserted) and the body's error is rethrown.
    /// - Throws: `.copyFailed` when `sql` is not a COPY FROM STDIN or data cannot be sent; `.server` when the
    ///   server rejects the data (e.g. `22P02` malformed input, `23505` duplicate key).
    public func copyFrom(_ sql: String, _ body: (inout PostgresCopyWriter) throws -> Void) throws {
        let handle = try liveHandle(for: sql)
        try startCopy(handle, sql: sql, expecting: PGRES_COPY_IN)
        var writer = PostgresCopyWriter(handle: handle)
        do {
            try body(&writer)
            try writer.flush()
        } catch {
            _ = PQputCopyEnd(handle, "COPY aborted by the client")
            drainResults(handle)
            throw error
        }
        guard PQputCopyEnd(handle, nil) == 1 else {
            let error = connectionError(handle, sql: sql)
            drainResults(handle)
            throw error
        }
        try finishCopy(handle, sql: sql)
    }

    /// Runs `COPY … TO STDOUT` and hands each chunk libpq returns (one row in text format; the header, rows and
    /// trailer in binary format) to `chunk`. The buffer is only valid during the call.
    ///
    /// When `chunk` throws, the remaining data is read and discarded so the connection stays usable, then the
    /// error is rethrown.
    /// - Throws: `.copyFailed` when `sql` is not a COPY TO STDOUT; `.server` when the COPY fails.
    public func copyTo(_ sql: String, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        let handle = try liveHandle(for: sql)
        try startCopy(handle, sql: sql, expecting: PGRES_COPY_OUT)
        var failure: (any Error)?
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(handle, &buffer, 0)
            if length > 0, let buffer {
                defer { PQfreemem(buffer) }
                if failure == nil {
                    do {
                        try chunk(UnsafeRawBufferPointer(start: buffer, count: Int(length)))
                    } catch {
                        failure = error
                    }
                }
                continue
            }
            if length == -2 {
                let error = connectionError(handle, sql: sql)
                drainResults(handle)
                throw error
            }
            break  // -1: the COPY is complete; its final result follows.
        }
        try finishCopy(handle, sql: sql)
        if let failure { throw failure }
    }

    private func startCopy(_ handle: OpaquePointer, sql: String, expecting: ExecStatusType) throws(PostgresError) {
        guard let result = PQexec(handle, sql) else { throw connectionError(handle, sql: sql) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        if status == expecting { return }
        if status == PGRES_COPY_IN {
            _ = PQputCopyEnd(handle, "wrong COPY direction")
            drainResults(handle)
        } else if status == PGRES_COPY_OUT {
            var buffer: UnsafeMutablePointer<CChar>?
            while PQgetCopyData(handle, &buffer, 0) > 0 {
                PQfreemem(buffer)
                buffer = nil
            }
            drainResults(handle)
        } else if status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY {
            throw Self.serverError(result, handle: handle, sql: sql)
        }
        let direction = expecting == PGRES_COPY_IN ? "COPY … FROM STDIN" : "COPY … TO STDOUT"
        throw PostgresError(code: .copyFailed, message: "statement is not a \(direction)", query: sql)
    }

    /// Reads the results that end a COPY, throwing the first error among them.
    private func finishCopy(_ handle: OpaquePointer, sql: String) throws(PostgresError) {
        var firstError: PostgresError?
        while let result = PQgetResult(handle) {
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status != PGRES_COMMAND_OK && firstError == nil {
                firstError = Self.serverError(result, handle: handle, sql: sql)
            }
        }
        if let firstError { throw firstError }
    }
}
