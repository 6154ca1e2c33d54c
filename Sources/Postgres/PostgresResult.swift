/// The rows of a completed statement, copied into Swift (the libpq result is already freed).
public struct PostgresResult: Sendable, RandomAccessCollection {
    /// Column names in result order.
    public var columns: [String]
    /// Rows affected by INSERT/UPDATE/DELETE/COPY etc. (`PQcmdTuples`), 0 when not applicable.
    public var affectedRows: Int
    /// The command tag, e.g. `"INSERT 0 3"`.
    public var commandTag: String

    /// Values row by row (`rowCount * columns.count`), nil for SQL NULL. Shared by all rows.
    let values: [String?]
    let rowCount: Int

    init(columns: [String], values: [String?], rowCount: Int, affectedRows: Int, commandTag: String) {
        self.columns = columns
        self.values = values
        self.rowCount = rowCount
        self.affectedRows = affectedRows
        self.commandTag = commandTag
    }

    /// Always 0.
    public var startIndex: Int { 0 }
    /// The number of rows.
    public var endIndex: Int { rowCount }

    /// The row at `position`; traps when out of range, like an array.
    public subscript(position: Int) -> PostgresRow {
        precondition(position >= 0 && position < rowCount, "row index \(position) out of range 0..<\(rowCount)")
        return PostgresRow(columns: columns, values: values, offset: position * columns.count)
    }
}

/// One row of a `PostgresResult`.
public struct PostgresRow: Sendable {
    /// Column names, as in the result.
    public let columns: [String]
    let values: [String?]
    let offset: Int

    /// The number of columns.
    public var count: Int { columns.count }

    /// The raw text of column `index`, nil for SQL NULL. Traps when `index` is out of range, like an array.
    public subscript(_ index: Int) -> String? {
        precondition(index >= 0 && index < columns.count, "column index \(index) out of range 0..<\(columns.count)")
        return values[offset + index]
    }

    /// The raw text of the first column named `column`, nil for SQL NULL or an unknown column.
    public subscript(_ column: String) -> String? {
        guard let index = columns.firstIndex(of: column) else { return nil }
        return values[offset + index]
    }

    /// Decodes column `index` as `T`. `Optional` types decode NULL as nil; other types throw on NULL.
    /// - Throws: `.decoding` for an out-of-range index, NULL into a non-optional, or malformed text.
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard index >= 0 && index < columns.count else {
            throw PostgresError(
                code: .decoding, message: "column index \(index) out of range 0..<\(columns.count)")
        }
        return try decodeValue(at: index, as: type)
    }

    /// Decodes the first column named `column` as `T`.
    /// - Throws: `.decoding` for an unknown column, NULL into a non-optional, or malformed text.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws(PostgresError)
        -> T
    {
        guard let index = columns.firstIndex(of: column) else {
            throw PostgresError(code: .decoding, message: "no column named \"\(column)\"")
        }
        return try decodeValue(at: index, as: type)
    }

    private func decodeValue<T: PostgresDecodable>(at index: Int, as type: T.Type) throws(PostgresError) -> T {
        do {
            guard let text = values[offset + index] else { return try T.postgresNull() }
            return try T(postgresText: text)
        } catch {
            var annotated = error
            annotated.message = "column \(index) (\"\(columns[index])\"): " + error.message
            throw annotated
        }
    }
}
