#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One migration: a numbered pair of files `NNNN_name.up.sql` and `NNNN_name.down.sql`.
public struct MigrationFile: Sendable, Hashable {
    /// The number in the file name; migrations apply in ascending order.
    public var version: Int
    /// The name part, e.g. `core` for `0001_core.up.sql`.
    public var name: String
    /// The SQL that applies the migration.
    public var upSQL: String
    /// The SQL that reverts it.
    public var downSQL: String

    /// Creates a migration from its parts.
    public init(version: Int, name: String, upSQL: String, downSQL: String) {
        self.version = version
        self.name = name
        self.upSQL = upSQL
        self.downSQL = downSQL
    }

    /// `NNNN_name`, the identifier recorded in the history.
    public var identifier: String { MigrationFile.identifier(version: version, name: name) }

    /// SHA-256 of the up file's bytes, as hex (equal to `sha256sum NNNN_name.up.sql`).
    public var checksum: String { SHA256.hexDigest(upSQL.utf8) }
    /// SHA-256 of the down file's bytes, as hex.
    public var downChecksum: String { SHA256.hexDigest(downSQL.utf8) }

    /// `NNNN_name` for a version and name.
    public static func identifier(version: Int, name: String) -> String {
        let digits = String(version)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits + "_" + name
    }

    /// What a file name means to the migration tooling.
    public enum FileName: Sendable, Hashable {
        case up(version: Int, name: String)
        case down(version: Int, name: String)
    }

    /// Parses `NNNN_name.up.sql` / `NNNN_name.down.sql` (at least four digits; name of `a-z`, `0-9`, `_`).
    /// Returns `nil` for anything else.
    public static func parseFileName(_ fileName: String) -> FileName? {
        let isUp: Bool
        let stem: Substring
        if fileName.hasSuffix(".up.sql") {
            isUp = true
            stem = fileName.dropLast(".up.sql".count)
        } else if fileName.hasSuffix(".down.sql") {
            isUp = false
            stem = fileName.dropLast(".down.sql".count)
        } else {
            return nil
        }
        guard let underscore = stem.firstIndex(of: "_") else { return nil }
        let digits = stem[..<underscore]
        let name = stem[stem.index(after: underscore)...]
        guard digits.count >= 4, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let version = Int(digits), version > 0,
              !name.isEmpty, name.count <= 100,
              name.allSatisfy({ ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" })
        else { return nil }
        return isUp ? .up(version: version, name: String(name)) : .down(version: version, name: String(name))
    }

    /// Pairs up the files of a directory listing: `files` maps file names to contents.
    ///
    /// Files that do not end in `.sql` are ignored (a README may sit beside the migrations).
    /// - Throws: `.invalidMigrationFile` for a misnamed `.sql` file, a version used twice, or an up file without
    ///   its down file (or the reverse).
    public static func pair(_ files: [String: String]) throws(MigrationError) -> [MigrationFile] {
        var ups: [Int: (name: String, sql: String, file: String)] = [:]
        var downs: [Int: (name: String, sql: String, file: String)] = [:]
        for (fileName, contents) in files.sorted(by: { $0.key < $1.key }) {
            guard fileName.hasSuffix(".sql") else { continue }
            switch parseFileName(fileName) {
            case nil:
                throw MigrationError(.invalidMigrationFile,
                    "migration file \(fileName) is misnamed: expected NNNN_name.up.sql or NNNN_name.down.sql "
                    + "(name of a-z, 0-9, _); rename it")
            case .up(let version, let name):
                if let other = ups[version] {
                    throw duplicate(version, other.file, fileName)
                }
                ups[version] = (name, contents, fileName)
            case .down(let version, let name):
                if let other = downs[version] {
                    throw duplicate(version, other.file, fileName)
                }
                downs[version] = (name, contents, fileName)
            }
        }
        var migrations: [MigrationFile] = []
        for (version, up) in ups.sorted(by: { $0.key < $1.key }) {
            guard let down = downs[version] else {
                throw MigrationError(.invalidMigrationFile,
                    "migration \(up.file) has no down file: add \(identifier(version: version, name: up.name)).down.sql")
            }
            guard down.name == up.name else {
                throw MigrationError(.invalidMigrationFile,
                    "migration files \(up.file) and \(down.file) share version \(version) but not a name; "
                    + "rename one so they match")
            }
            migrations.append(MigrationFile(version: version, name: up.name, upSQL: up.sql, downSQL: down.sql))
        }
        if let orphan = downs.keys.sorted().first(where: { ups[$0] == nil }), let down = downs[orphan] {
            throw MigrationError(.invalidMigrationFile,
                "migration \(down.file) has no up file: add \(identifier(version: orphan, name: down.name)).up.sql")
        }
        return migrations
    }

    private static func duplicate(_ version: Int, _ first: String, _ second: String) -> MigrationError {
        MigrationError(.invalidMigrationFile,
            "migration version \(version) is used twice (\(first), \(second)); give each migration its own number")
    }

    /// Reads and pairs the migrations of a directory.
    /// - Throws: `.directoryNotFound` when `path` is not a readable directory, `.invalidMigrationFile` as `pair`.
    public static func load(directory path: String) throws(MigrationError) -> [MigrationFile] {
        guard let dir = opendir(path) else {
            throw MigrationError(.directoryNotFound,
                "migrations directory \(path) not found: run from the repository root or pass --migrations-dir")
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasSuffix(".sql") { names.append(name) }
        }
        closedir(dir)
        var files: [String: String] = [:]
        for name in names {
            files[name] = try readFile(path + "/" + name)
        }
        return try pair(files)
    }

    private static func readFile(_ path: String) throws(MigrationError) -> String {
        guard let handle = fopen(path, "rb") else {
            throw MigrationError(.invalidMigrationFile, "cannot read migration file \(path): check its permissions")
        }
        defer { fclose(handle) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&buffer, 1, buffer.count, handle)
            if count > 0 { bytes.append(contentsOf: buffer[0..<count]) }
            if count < buffer.count { break }
        }
        if ferror(handle) != 0 {
            throw MigrationError(.invalidMigrationFile, "cannot read migration file \(path): read error")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw MigrationError(.invalidMigrationFile, "migration file \(path) is not valid UTF-8: re-save it as UTF-8")
        }
        return text
    }
}
