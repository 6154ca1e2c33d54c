import DemoData
import Postgres
import Testing


@Suite("PostgreSQL configuration URLs")
struct PostgresConfigurationTests {
    /// Characters that are reserved or special in URLs, plus non-ASCII.
    static let alphabet: [Character] = Array("aZ09-._~:/?#[]@!$&'()*+,;=% \"\\<>{}|^`é漢🏠\t")

    static func randomText(_ generator: inout SplitMix64, allowEmpty: Bool = false) -> String {
        let length = Int.random(in: (allowEmpty ? 0 : 1)...12, using: &generator)
        return String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
    }

    static func randomConfiguration(_ generator: inout SplitMix64) -> PostgresConfiguration {
        let hosts = ["localhost", "127.0.0.1", "db.example.com", "::1", "fe80::1%eth0", "/tmp/socket dir", "h-1"]
        var options: [String: String] = [:]
        for _ in 0..<Int.random(in: 0...3, using: &generator) {
            options[randomText(&generator)] = randomText(&generator, allowEmpty: true)
        }
        return PostgresConfiguration(
            host: hosts.randomElement(using: &generator)!,
            port: Int.random(in: 1...65535, using: &generator),
            user: randomText(&generator),
            password: Bool.random(using: &generator) ? randomText(&generator, allowEmpty: true) : nil,
            database: randomText(&generator),
            options: options)
    }

    @Test(arguments: [UInt64(1), 2, 3, 42, 0xDEAD_BEEF])
    func urlRoundTrips(seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        for _ in 0..<500 {
            let configuration = Self.randomConfiguration(&generator)
            let parsed = try PostgresConfiguration(url: configuration.url)
            #expect(parsed == configuration, "seed \(seed): \(configuration.url)")
        }
    }

    @Test(arguments: [UInt64(7), 8, 9])
    func descriptionHidesPassword(seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        for _ in 0..<500 {
            var configuration = Self.randomConfiguration(&generator)
            configuration.password = Self.randomText(&generator)
            // The description is the URL with the password masked: parsing it back gives everything but the
            // password, which proves the real password appears nowhere in it.
            var masked = try PostgresConfiguration(url: configuration.description)
            #expect(masked.password == "***")
            masked.password = configuration.password
            #expect(masked == configuration)
        }
    }

    @Test func parsesComponentsAndDefaults() throws {
        let full = try PostgresConfiguration(
            url: "postgresql://u%40x:p%3Aw%2F@db.example.com:6543/my%20db?sslmode=disable&application_name=a%26b")
        #expect(full.user == "u@x")
        #expect(full.password == "p:w/")
        #expect(full.host == "db.example.com")
        #expect(full.port == 6543)
        #expect(full.database == "my db")
        #expect(full.options == ["sslmode": "disable", "application_name": "a&b"])

        let minimal = try PostgresConfiguration(url: "postgres://localhost")
        #expect(minimal.user == "postgres")
        #expect(minimal.password == nil)
        #expect(minimal.port == 5432)
        #expect(minimal.database == "postgres")

        let userOnly = try PostgresConfiguration(url: "postgres://alice@h/")
        #expect(userOnly.database == "alice")

        let socket = try PostgresConfiguration(url: "postgres://u@%2Ftmp%2Fsock:5433/db")
        #expect(socket.host == "/tmp/sock")
        #expect(socket.port == 5433)

        let ipv6 = try PostgresConfiguration(url: "postgres://u@[::1]:5000/db")
        #expect(ipv6.host == "::1")
        #expect(ipv6.port == 5000)

        let unencodedAt = try PostgresConfiguration(url: "postgres://u:p@ss@h/db")
        #expect(unencodedAt.password == "p@ss")
        #expect(unencodedAt.host == "h")

        let empty = try PostgresConfiguration(url: "postgres://u:@h/db")
        #expect(empty.password == "")

        #expect(full.with(database: "other").database == "other")
        #expect(full.with(database: "other").user == "u@x")
    }

    @Test func rejectsMalformedPorts() {
        for url in ["postgres://h:0/db", "postgres://h:+5/db", "postgres://h:5 /db", "postgres://h:/db",
                    "postgres://h:99999999999999999999/db"] {
            #expect(throws: PostgresError.self, "\(url)") { try PostgresConfiguration(url: url) }
        }
    }
}

@Suite("PostgreSQL identifiers")
struct PostgresIdentifierTests {
    @Test func quotesAndEscapes() throws {
        #expect(try PostgresIdentifier.quoted("listings") == "\"listings\"")
        #expect(try PostgresIdentifier.quoted("a\"b") == "\"a\"\"b\"")
        #expect(try PostgresIdentifier.quoted("\"") == "\"\"\"\"")
        #expect(try PostgresIdentifier.quoted(String(repeating: "x", count: 63)).count == 65)
    }

    @Test func rejectsInvalidNames() {
        // 64 bytes in 32 characters: the limit is in bytes, as in PostgreSQL.
        for name in ["", String(repeating: "x", count: 64), String(repeating: "é", count: 32), "a\u{0}"] {
            let error = #expect(throws: PostgresError.self) { try PostgresIdentifier.quoted(name) }
            #expect(error?.code == .invalidIdentifier)
        }
    }

    @Test(arguments: [UInt64(11), 12])
    func quotedIsAnInverseOfParsing(seed: UInt64) throws {
        // Reference: strip the outer quotes and collapse doubled quotes; must give back the original name.
        var generator = SplitMix64(seed: seed)
        let alphabet: [Character] = Array("a\"\" ;-'()é漢")
        for _ in 0..<1000 {
            let name = String((0..<Int.random(in: 1...20, using: &generator)).map { _ in
                alphabet.randomElement(using: &generator)!
            })
            let quoted = try PostgresIdentifier.quoted(name)
            #expect(quoted.first == "\"" && quoted.last == "\"")
            let inner = quoted.dropFirst().dropLast()
            var decoded = ""
            var index = inner.startIndex
            while index < inner.endIndex {
                let character = inner[index]
                if character == "\"" {
                    let next = inner.index(after: index)
                    #expect(next < inner.endIndex && inner[next] == "\"", "lone quote in \(quoted)")
                    index = inner.index(after: next)
                } else {
                    index = inner.index(after: index)
                }
                decoded.append(character)
            }
            #expect(decoded == name)
        }
    }
}
