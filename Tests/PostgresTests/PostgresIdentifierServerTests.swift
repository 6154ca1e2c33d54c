import DemoData
import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL identifiers on the server", .serialized, .timeLimit(.minutes(2)))
struct PostgresIdentifierServerTests {
    @Test func quotedNamesCreateExactlyThatObject() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            var generator = SplitMix64(seed: 99)
            let alphabet: [Character] = Array("aZ\" ;-'()é漢.$")
            var names: Set<String> = ["Robert\"; DROP TABLE x; --", String(repeating: "é", count: 31) + "x"]
            while names.count < 60 {
                names.insert(String((0..<Int.random(in: 1...20, using: &generator)).map { _ in
                    alphabet.randomElement(using: &generator)!
                }))
            }
            for name in names {
                try connection.executeScript("CREATE TABLE \(try PostgresIdentifier.quoted(name)) (id int)")
            }
            let stored = try connection.query(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")
            #expect(Set(try stored.map { try $0.decode(0, as: String.self) }) == names)
        }
    }
}
