#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Connection settings, usually parsed from a URL such as
/// `postgres://user:password@host:5432/database?sslmode=disable` (the `postgresql://` scheme works too).
///
/// User, password, database and host are percent-decoded; query parameters become `options` and are passed to
/// libpq as connection keywords (e.g. `sslmode`, `connect_timeout`, `application_name`). A host starting with `/`
/// (written `%2Fpath` in a URL) is a unix socket directory. `description` never shows the password.
public struct PostgresConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Host name, IP address, or unix socket directory (starting with `/`).
    public var host: String
    /// TCP port (also selects the unix socket file name). Default 5432.
    public var port: Int
    /// Role to log in as. Defaults to `postgres` when the URL has none.
    public var user: String
    /// Password, if any.
    public var password: String?
    /// Database name. Defaults to the user name when the URL has none, as libpq does.
    public var database: String
    /// Extra libpq connection keywords from the URL's query string.
    public var options: [String: String]

    /// Creates a configuration from its parts.
    public init(
        host: String = "127.0.0.1", port: Int = 5432, user: String = "postgres", password: String? = nil,
        database: String = "postgres", options: [String: String] = [:]
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.options = options
    }

    /// Parses a `postgres://` or `postgresql://` URL.
    /// - Throws: `.invalidURL` with a message naming the problem (never the password).
    public init(url: String) throws(PostgresError) {
        var rest = Substring(url)
        if rest.hasPrefix("postgres://") {
            rest = rest.dropFirst("postgres://".count)
        } else if rest.hasPrefix("postgresql://") {
            rest = rest.dropFirst("postgresql://".count)
        } else {
            throw Self.invalid("expected a URL starting with postgres:// or postgresql://")
        }

        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        if let hash = query.firstIndex(of: "#") { query = query[..<hash] }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }

        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }

        // The user info ends at the last "@", so an unencoded "@" in a password still parses.
        var userInfo: Substring?
        if let at = rest.lastIndex(of: "@") {
            userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }

        var user = "postgres"
        var password: String?
        if let userInfo {
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], what: "user")
                password = try Self.decode(userInfo[userInfo.index(after: colon)...], what: "password")
            } else {
                user = try Self.decode(userInfo, what: "user")
            }
            if user.isEmpty { user = "postgres" }
        }

        var hostPart = rest
        var portPart: Substring?
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else {
                throw Self.invalid("unterminated [ in IPv6 host")
            }
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") {
                portPart = after.dropFirst()
            } else if !after.isEmpty {
                throw Self.invalid("unexpected characters after IPv6 host")
            }
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
        } else if let colon = hostPart.lastIndex(of: ":") {
            portPart = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        var host = try Self.decode(hostPart, what: "host")
        if host.isEmpty { host = "localhost" }

        var port = 5432
        if let portPart {
            guard portPart.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(portPart),
                (1...65535).contains(value)
            else {
                throw Self.invalid("port must be a number from 1 to 65535")
            }
            port = value
        }

        var database = try Self.decode(path, what: "database")
        if database.isEmpty { database = user }

        var options: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            guard let equals = pair.firstIndex(of: "=") else {
                throw Self.invalid("query parameter without a value")
            }
            let key = try Self.decode(pair[..<equals], what: "query parameter")
            let value = try Self.decode(pair[pair.index(after: equals)...], what: "query parameter")
            guard !key.isEmpty else { throw Self.invalid("query parameter with an empty name") }
            options[key] = value
        }

        self.init(host: host, port: port, user: user, password: password, database: database, options: options)
        guard !host.utf8.contains(0), !user.utf8.contains(0), !database.utf8.contains(0),
            !(password?.utf8.contains(0) ?? false)
        else {
            throw Self.invalid("NUL characters are not allowed")
        }
    }

    /// Reads and parses the URL in the environment variable `name`.
    /// - Throws: `.invalidURL` when the variable is unset or does not parse.
    public static func fromEnvironment(_ name: String = "EXPLORE_POSTGRES_URL") throws(PostgresError)
        -> PostgresConfiguration
    {
        guard let raw = getenv(name) else {
            throw PostgresError(code: .invalidURL, message: "environment variable \(name) is not set")
        }
        return try PostgresConfiguration(url: String(cString: raw))
    }

    /// The same settings with another database.
    public func with(database: String) -> PostgresConfiguration {
        var copy = self
        copy.database = database
        return copy
    }

    /// The URL for these settings, including the password; `PostgresConfiguration(url:)` parses it back to an
    /// equal value.
    public var url: String { makeURL(showingPassword: true) }

    /// The URL with the password replaced by `***`.
    public var description: String { makeURL(showingPassword: false) }

    private func makeURL(showingPassword: Bool) -> String {
        var text = "postgres://" + Self.encode(user)
        if let password {
            text += ":" + (showingPassword ? Self.encode(password) : "***")
        }
        text += "@"
        if host.contains(":") && !host.hasPrefix("/") {
            // IPv6 literal; a zone ID's "%" is escaped as "%25" (RFC 6874), colons stay readable.
            text += "[" + Self.encode(host).replacing("%3A", with: ":") + "]"
        } else {
            text += Self.encode(host)
        }
        text += ":\(port)/" + Self.encode(database)
        if !options.isEmpty {
            text += "?" + options.sorted { $0.key < $1.key }
                .map { Self.encode($0.key) + "=" + Self.encode($0.value) }
                .joined(separator: "&")
        }
        return text
    }

    private static func invalid(_ message: String) -> PostgresError {
        PostgresError(code: .invalidURL, message: "invalid PostgreSQL URL: " + message)
    }

    /// Percent-encodes everything outside RFC 3986's unreserved set.
    static func encode(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                bytes.append(byte)
            default:
                bytes.append(UInt8(ascii: "%"))
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0x0F)])
            }
        }
        result = String(decoding: bytes, as: UTF8.self)
        return result
    }

    /// Percent-decodes a URL component; rejects malformed escapes and invalid UTF-8.
    static func decode(_ text: Substring, what: String) throws(PostgresError) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw invalid("malformed percent escape in \(what)")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw invalid("\(what) is not valid UTF-8")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
