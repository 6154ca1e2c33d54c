import DemoData
import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL value coding")
struct PostgresValueTests {
    @Test(arguments: [UInt64(31), 32])
    func encodeDecodeRoundTripsLocally(seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        for _ in 0..<2000 {
            let int = Int(bitPattern: UInt(generator.next()))
            #expect(try Int(postgresText: int.postgresText) == int)
            let int32 = Int32(truncatingIfNeeded: generator.next())
            #expect(try Int32(postgresText: int32.postgresText) == int32)
            let bytes = (0..<Int.random(in: 0...40, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            #expect(try [UInt8](postgresText: bytes.postgresText) == bytes)
            let bool = Bool.random(using: &generator)
            #expect(try Bool(postgresText: bool.postgresText) == bool)
        }
    }

    @Test func malformedTextIsADecodingError() {
        let cases: [(String, any PostgresDecodable.Type)] = [
            ("12x", Int.self), ("", Int.self), ("9223372036854775808", Int64.self), ("2147483648", Int32.self),
            ("maybe", Bool.self), ("1,5", Double.self), ("\\x0", [UInt8].self), ("\\xzz", [UInt8].self),
            ("abc", [UInt8].self),
        ]
        for (text, type) in cases {
            let error = #expect(throws: PostgresError.self, "\(text) as \(type)") {
                _ = try type.init(postgresText: text)
            }
            #expect(error?.code == .decoding)
        }
    }
}

@Suite("PostgreSQL value coding against the server", .serialized, .timeLimit(.minutes(2)))
struct PostgresValueServerTests {
    /// The server's own parsing and printing is the reference for every encoder and decoder.
    @Test func valuesSurviveTheServer() throws {
        let connection = try PostgresConnection.connect(try TestPostgres.serverConfiguration())
        defer { connection.close() }
        var generator = SplitMix64(seed: 77)
        for _ in 0..<200 {
            let int64 = Int64(bitPattern: generator.next())
            let int32 = Int32(truncatingIfNeeded: generator.next())
            let bytes = (0..<Int.random(in: 0...64, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            let bool = Bool.random(using: &generator)
            let row = try connection.query(
                "SELECT $1::int8, $2::int4, $3::bytea, $4::bool, length($3::bytea), $5::int8 IS NULL",
                [int64, int32, bytes, bool, nil])[0]
            #expect(try row.decode(0, as: Int64.self) == int64)
            #expect(try row.decode(1, as: Int32.self) == int32)
            #expect(try row.decode(2, as: [UInt8].self) == bytes)
            #expect(try row.decode(3, as: Bool.self) == bool)
            #expect(try row.decode(4, as: Int.self) == bytes.count)
            #expect(try row.decode(5, as: Bool.self) == true)
        }
    }
}
