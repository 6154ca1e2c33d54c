import DemoData
import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL COPY", .serialized, .timeLimit(.minutes(5)))
struct PostgresCopyTests {
    @Test func copyInTextMatchesInsertedRows() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE items (id int PRIMARY KEY, label text)")
            // Enough rows to cross the 64 KiB chunk boundary many times, with awkward characters.
            let labels: [String?] = (0..<50_000).map { index in
                switch index % 5 {
                case 0: nil
                case 1: "tab\there\\back"
                case 2: "line\nbreak ✓ 🏠"
                case 3: ""
                default: "plain \(index)"
                }
            }
            var bytes = 0
            try connection.copyFrom("COPY items (id, label) FROM STDIN") { writer in
                for (id, label) in labels.enumerated() {
                    try writer.write("\(id)\t\(PostgresCopyWriter.textField(label))\n")
                }
                bytes = writer.bytesWritten
            }
            #expect(bytes > 10 * PostgresCopyWriter.chunkSize)
            let rows = try connection.query("SELECT id, label FROM items ORDER BY id")
            #expect(rows.count == labels.count)
            for row in rows {
                let id = try row.decode(0, as: Int.self)
                #expect(row[1] == labels[id])
            }
        }
    }

    /// The server is the reference for the escaping: random values with every special character survive
    /// `writeRow` → COPY → SELECT unchanged.
    @Test(arguments: [UInt64(21), 22, 23])
    func writeRowEscapingRoundTrips(seed: UInt64) throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE r (id int PRIMARY KEY, a text, b text)")
            var generator = SplitMix64(seed: seed)
            let alphabet: [String] = ["\\", "\t", "\n", "\r", "N", "\\N", ".", "a", "é", "🏠", " ", ",", "\""]
            func randomValue() -> String? {
                if Int.random(in: 0..<8, using: &generator) == 0 { return nil }
                return (0..<Int.random(in: 0...12, using: &generator)).map { _ in
                    alphabet.randomElement(using: &generator)!
                }.joined()
            }
            let rows = (0..<2000).map { _ in (randomValue(), randomValue()) }
            try connection.copyFrom("COPY r (id, a, b) FROM STDIN") { writer in
                for (id, row) in rows.enumerated() { try writer.writeRow([String(id), row.0, row.1]) }
            }
            let stored = try connection.query("SELECT id, a, b FROM r ORDER BY id")
            #expect(stored.count == rows.count)
            for row in stored {
                let id = try row.decode(0, as: Int.self)
                #expect(row[1] == rows[id].0 && row[2] == rows[id].1, "row \(id)")
            }
        }
    }

    @Test func copyOutTextReturnsEveryRow() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript(
                "CREATE TABLE n AS SELECT g AS id, 'v' || g AS v FROM generate_series(1, 20000) g")
            var bytes: [UInt8] = []
            try connection.copyTo("COPY (SELECT id, v FROM n ORDER BY id) TO STDOUT") { chunk in
                bytes.append(contentsOf: chunk)
            }
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
            #expect(lines.count == 20000)
            #expect(lines.first == "1\tv1")
            #expect(lines.last == "20000\tv20000")
        }
    }

    @Test func binaryCopyRoundTrips() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("""
                CREATE TABLE source (id int8, data bytea, price float8, note text);
                INSERT INTO source SELECT g, decode(md5(g::text), 'hex'), g * 1.5, CASE WHEN g % 3 = 0 THEN NULL
                    ELSE 'n' || g END FROM generate_series(1, 5000) g;
                CREATE TABLE target (LIKE source);
                """)
            var binary: [UInt8] = []
            try connection.copyTo("COPY source TO STDOUT (FORMAT binary)") { binary.append(contentsOf: $0) }
            #expect(binary.starts(with: Array("PGCOPY\n\u{FF}\r\n\0".unicodeScalars.map { UInt8($0.value) })))
            try connection.copyFrom("COPY target FROM STDIN (FORMAT binary)") { writer in
                // Feed in uneven slices so the writer's chunking is exercised.
                var offset = 0
                var step = 1
                while offset < binary.count {
                    let end = min(binary.count, offset + step)
                    try binary[offset..<end].withUnsafeBytes { try writer.write($0) }
                    offset = end
                    step = step * 3 % 70_001 + 1
                }
            }
            let difference = try connection.query("""
                SELECT count(*) FROM ((TABLE source EXCEPT ALL TABLE target) UNION ALL
                    (TABLE target EXCEPT ALL TABLE source)) d
                """)
            #expect(try difference[0].decode(0, as: Int.self) == 0)
            #expect(try connection.query("SELECT count(*) FROM target")[0].decode(0, as: Int.self) == 5000)
        }
    }

    @Test func failingCopyLeavesConnectionUsable() throws {
        struct Stop: Error {}
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE c (id int PRIMARY KEY)")

            // Malformed data: the server rejects it with 22P02.
            let malformed = #expect(throws: PostgresError.self) {
                try connection.copyFrom("COPY c FROM STDIN") { try $0.write("1\nnot a number\n") }
            }
            #expect(malformed?.sqlState == "22P02")

            // Duplicate keys: 23505, nothing inserted.
            let duplicate = #expect(throws: PostgresError.self) {
                try connection.copyFrom("COPY c FROM STDIN") { try $0.write("1\n2\n1\n") }
            }
            #expect(duplicate?.sqlState == "23505")

            // The body throws: the COPY is aborted and the body's error comes back.
            #expect(throws: Stop.self) {
                try connection.copyFrom("COPY c FROM STDIN") { writer in
                    try writer.write("7\n")
                    throw Stop()
                }
            }

            // A consumer that throws midway: the rest is drained.
            var seen = 0
            #expect(throws: Stop.self) {
                try connection.copyTo("COPY (SELECT generate_series(1, 1000)) TO STDOUT") { _ in
                    seen += 1
                    if seen == 10 { throw Stop() }
                }
            }
            #expect(seen == 10)

            // Wrong statement kinds.
            let notCopy = #expect(throws: PostgresError.self) { try connection.copyFrom("SELECT 1") { _ in } }
            #expect(notCopy?.code == .copyFailed)
            let wrongDirection = #expect(throws: PostgresError.self) {
                try connection.copyTo("COPY c FROM STDIN") { _ in }
            }
            #expect(wrongDirection?.code == .copyFailed)
            let viaQuery = #expect(throws: PostgresError.self) { try connection.query("COPY c TO STDOUT") }
            #expect(viaQuery?.code == .copyFailed)
            let badSQL = #expect(throws: PostgresError.self) {
                try connection.copyFrom("COPY nowhere FROM STDIN") { _ in }
            }
            #expect(badSQL?.sqlState == "42P01")

            #expect(try connection.query("SELECT count(*) FROM c")[0].decode(0, as: Int.self) == 0)
        }
    }
}
