/// Validation and quoting of SQL identifiers (table, schema, channel names) that cannot be passed as parameters.
public enum PostgresIdentifier {
    /// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1); we reject them instead,
    /// so a name never silently refers to a different object.
    public static let maximumLength = 63

    /// Validates `name` (1…63 UTF-8 bytes, no NUL) and returns it double-quoted with embedded quotes doubled.
    /// - Throws: `.invalidIdentifier` when the name is empty, too long or contains NUL.
    public static func quoted(_ name: String) throws(PostgresError) -> String {
        let byteCount = name.utf8.count
        guard byteCount > 0 else {
            throw PostgresError(code: .invalidIdentifier, message: "identifier is empty")
        }
        guard byteCount <= maximumLength else {
            throw PostgresError(
                code: .invalidIdentifier,
                message: "identifier is \(byteCount) bytes long; the maximum is \(maximumLength)")
        }
        guard !name.utf8.contains(0) else {
            throw PostgresError(code: .invalidIdentifier, message: "identifier contains a NUL character")
        }
        var result = "\""
        for character in name.unicodeScalars {
            if character == "\"" { result += "\"\"" } else { result.unicodeScalars.append(character) }
        }
        return result + "\""
    }
}
