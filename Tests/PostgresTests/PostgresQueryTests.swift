import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL queries", .serialized, .timeLimit(.minutes(5)))
struct PostgresQueryTests {
    @Test func parametersRoundTripWithoutInterpolation() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL)")
            let hostile = [
                "Robert'); DROP TABLE people; --", "' OR '1'='1", "$1", "\\", "\"quoted\"", "a\tb\nc", "",
                "e\u{301}clair ✓ 漢字 🏠",
            ]
            for (index, name) in hostile.enumerated() {
                try connection.query("INSERT INTO people (id, name) VALUES ($1, $2)", [index, name])
            }
            let rows = try connection.query("SELECT id, name FROM people ORDER BY id")
            #expect(rows.count == hostile.count)
            for row in rows {
                let id: Int = try row.decode("id")
                #expect(try row.decode("name", as: String.self) == hostile[id])
            }
            let match = try connection.query("SELECT count(*) FROM people WHERE name = $1", ["' OR '1'='1"])
            #expect(try match[0].decode(0, as: Int.self) == 1)
        }
    }

    @Test func typedValuesAndNulls() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let bytes: [UInt8] = [0, 1, 0x7f, 0x80, 0xff]
            let row = try connection.query(
                "SELECT $1::int8, $2::int4, $3::bool, $4::float8, $5::bytea, $6::text, $7::float8, $8::int2",
                [Int64.max, Int32.min, true, 0.1, bytes, nil, -Double.infinity, Int16(-7)])[0]
            #expect(try row.decode(0, as: Int64.self) == .max)
            #expect(try row.decode(1, as: Int32.self) == .min)
            #expect(try row.decode(2, as: Bool.self) == true)
            #expect(try row.decode(3, as: Double.self) == 0.1)
            #expect(try row.decode(4, as: [UInt8].self) == bytes)
            #expect(row[5] == nil)
            #expect(try row.decode(5, as: String?.self) == nil)
            #expect(try row.decode(6, as: Double.self) == -.infinity)
            #expect(try row.decode(7, as: Int16.self) == -7)
            let nullError = #expect(throws: PostgresError.self) { try row.decode(5, as: String.self) }
            #expect(nullError?.code == .decoding)
            let typeError = #expect(throws: PostgresError.self) { try row.decode(2, as: Int.self) }
            #expect(typeError?.code == .decoding)
            #expect(throws: PostgresError.self) { try row.decode("missing", as: Int.self) }
            #expect(throws: PostgresError.self) { try row.decode(99, as: Int.self) }
        }
    }

    @Test func doublesRoundTripExactly() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<200 {
                let value = Double(bitPattern: generator.next())
                let back = try connection.query("SELECT $1::float8", [value])[0].decode(0, as: Double.self)
                if value.isNaN { #expect(back.isNaN) } else { #expect(back == value) }
            }
        }
    }

    @Test func unicodeTextRoundTrips() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<100 {
                let scalars = (0..<Int.random(in: 0...40, using: &generator)).compactMap { _ in
                    Unicode.Scalar(UInt32.random(in: 1...0x10FFFF, using: &generator))
                }
                var text = ""
                text.unicodeScalars.append(contentsOf: scalars)
                let row = try connection.query("SELECT $1::text, length($1::text)", [text])[0]
                #expect(try row.decode(0, as: String.self) == text)
                #expect(try row.decode(1, as: Int.self) == text.unicodeScalars.count)
            }
        }
    }

    @Test func largeResultIsComplete() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let result = try connection.query(
                "SELECT g, md5(g::text) FROM generate_series(1, $1::int) AS g ORDER BY g", [100_000])
            #expect(result.count == 100_000)
            #expect(result.columns == ["g", "md5"])
            var sum = 0
            for row in result { sum += try row.decode(0, as: Int.self) }
            #expect(sum == 100_000 * 100_001 / 2)
            #expect(try result[99_999].decode(0, as: Int.self) == 100_000)
        }
    }

    @Test func affectedRowsAndScripts() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("""
                CREATE TABLE t (id int PRIMARY KEY, v text);
                INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g;
                """)
            let update = try connection.query("UPDATE t SET v = $1 WHERE id > $2", ["y", 3])
            #expect(update.affectedRows == 7)
            #expect(update.commandTag == "UPDATE 7")
            let empty = try connection.query("SELECT * FROM t WHERE false")
            #expect(empty.isEmpty)
            #expect(empty.columns == ["id", "v"])
        }
    }

    @Test func transactionsCommitAndRollBack() throws {
        struct Abort: Error {}
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE t (id int PRIMARY KEY)")
            let committed = try connection.transaction {
                try connection.query("INSERT INTO t VALUES (1)")
                return 42
            }
            #expect(committed == 42)
            #expect(throws: Abort.self) {
                try connection.transaction {
                    try connection.query("INSERT INTO t VALUES (2)")
                    throw Abort()
                }
            }
            // A server error inside the body rolls back too, and the connection stays usable.
            #expect(throws: PostgresError.self) {
                try connection.transaction {
                    try connection.query("INSERT INTO t VALUES (3)")
                    try connection.query("INSERT INTO t VALUES (1)")
                }
            }
            // Nested: the inner failure only undoes the inner part.
            try connection.transaction {
                try connection.query("INSERT INTO t VALUES (4)")
                try? connection.transaction {
                    try connection.query("INSERT INTO t VALUES (5)")
                    throw Abort()
                }
            }
            let ids = try connection.query("SELECT id FROM t ORDER BY id").map { try $0.decode(0, as: Int.self) }
            #expect(ids == [1, 4])
            let other = try PostgresConnection.connect(configuration)
            defer { other.close() }
            #expect(try other.query("SELECT count(*) FROM t")[0].decode(0, as: Int.self) == 2)
        }
    }

    @Test func serverErrorsCarrySQLState() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            let syntax = #expect(throws: PostgresError.self) { try connection.query("SELEC 1") }
            #expect(syntax?.code == .server)
            #expect(syntax?.sqlState == "42601")
            let undefined = #expect(throws: PostgresError.self) { try connection.query("SELECT * FROM nowhere") }
            #expect(undefined?.sqlState == "42P01")
            #expect(undefined?.message == "relation \"nowhere\" does not exist")
            try connection.executeScript("CREATE TABLE u (id int PRIMARY KEY)")
            try connection.query("INSERT INTO u VALUES ($1)", [1])
            let duplicate = #expect(throws: PostgresError.self) {
                try connection.query("INSERT INTO u VALUES ($1)", [1])
            }
            #expect(duplicate?.sqlState == "23505")
            #expect(duplicate?.detail == "Key (id)=(1) already exists.")
            // description is one line without the SQL; debugDescription has it.
            let error = try #require(duplicate)
            #expect(!error.description.contains("\n"))
            #expect(!error.description.contains("INSERT INTO"))
            #expect(error.description.contains("23505"))
            #expect(error.debugDescription.contains("INSERT INTO u"))
            let scriptError = #expect(throws: PostgresError.self) {
                try connection.executeScript("SELECT 1; SELECT * FROM nowhere; SELECT 2")
            }
            #expect(scriptError?.sqlState == "42P01")
            // The connection is still usable after every error.
            #expect(try connection.query("SELECT 1")[0].decode(0, as: Int.self) == 1)
        }
    }

    @Test func closedConnectionThrows() throws {
        let connection = try PostgresConnection.connect(try TestPostgres.serverConfiguration())
        connection.close()
        connection.close()
        let error = #expect(throws: PostgresError.self) { try connection.query("SELECT 1") }
        #expect(error?.code == .connectionClosed)
        #expect(!connection.isConnected)
    }

    @Test func killedBackendIsReportedAsClosed() throws {
        let configuration = try TestPostgres.serverConfiguration()
        let victim = try PostgresConnection.connect(configuration)
        defer { victim.close() }
        let killer = try PostgresConnection.connect(configuration)
        defer { killer.close() }
        try killer.query("SELECT pg_terminate_backend($1)", [victim.backendProcessID])
        let error = #expect(throws: PostgresError.self) { try victim.query("SELECT 1") }
        #expect(error?.code == .connectionClosed)
        #expect(!victim.isConnected)
    }

    @Test func preparedStatementsArePreparedOnceAndSurviveDeallocation() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE t (id int8 PRIMARY KEY, name text)")
            let insert = PreparedStatement("INSERT INTO t (id, name) VALUES ($1, $2) RETURNING id")
            let select = PreparedStatement("SELECT name FROM t WHERE id = ANY($1::int8[]) ORDER BY id")
            func prepared() throws -> Int {
                try connection.query("SELECT count(*) FROM pg_prepared_statements")[0].decode(0, as: Int.self)
            }
            for id in 1...12 {
                #expect(try connection.query(insert, [id, "n\(id)"])[0].decode(0, as: Int.self) == id)
            }
            #expect(try connection.query(select, ["{2,5}"]).map { $0[0] } == ["n2", "n5"])
            #expect(try prepared() == 2)

            // Gone from the server: outside a transaction block it is prepared again and run at once.
            try connection.executeScript("DEALLOCATE ALL")
            #expect(try connection.query(select, ["{7}"]).map { $0[0] } == ["n7"])
            // Inside one, the failure aborts the block, so it surfaces; the next run prepares it again.
            try connection.executeScript("DEALLOCATE ALL")
            let aborted = #expect(throws: PostgresError.self) {
                try connection.transaction { try connection.query(select, ["{7}"]) }
            }
            #expect(aborted?.sqlState == "26000")
            #expect(try connection.query(select, ["{8}"]).map { $0[0] } == ["n8"])

            // Its result columns changed under it (the table was replaced): PostgreSQL refuses the old one.
            try connection.executeScript("""
                DROP TABLE t; CREATE TABLE t (id int8 PRIMARY KEY, name int8); INSERT INTO t VALUES (9, 90)
                """)
            #expect(try connection.query(select, ["{9}"]).map { $0[0] } == ["90"])

            // Bad parameters are the server's error, and leave the statement usable.
            let bad = #expect(throws: PostgresError.self) { try connection.query(select, ["not an array"]) }
            #expect(bad?.sqlState == "22P02")
            #expect(throws: PostgresError.self) { try connection.query(select, []) }
            #expect(try connection.query(select, ["{9}"]).map { $0[0] } == ["90"])
        }
    }
}

@Suite("PostgreSQL transaction edge cases", .serialized, .timeLimit(.minutes(2)))
struct PostgresTransactionEdgeTests {
    @Test func swallowedFailureIsNotReportedAsCommit() throws {
        try TestPostgres.withDatabase { configuration in
            let connection = try PostgresConnection.connect(configuration)
            defer { connection.close() }
            try connection.executeScript("CREATE TABLE t (id int PRIMARY KEY)")
            let error = #expect(throws: PostgresError.self) {
                try connection.transaction {
                    try connection.query("INSERT INTO t VALUES (1)")
                    _ = try? connection.query("INSERT INTO t VALUES (1)")
                }
            }
            #expect(error?.code == .server)
            #expect(try connection.query("SELECT count(*) FROM t")[0].decode(0, as: Int.self) == 0)
        }
    }

    @Test func nulInParameterIsRejectedClientSide() throws {
        let connection = try PostgresConnection.connect(try TestPostgres.serverConfiguration())
        defer { connection.close() }
        let error = #expect(throws: PostgresError.self) { try connection.query("SELECT $1::text", ["a\u{0}b"]) }
        #expect(error?.code == .server)
        let truncated = #expect(throws: PostgresError.self) { try connection.query("SELECT 1\u{0}; DROP") }
        #expect(truncated?.message == "SQL text contains a NUL character")
        #expect(throws: PostgresError.self) { try connection.executeScript("SELECT 1\u{0}") }
        let tooMany = [(any PostgresEncodable)?](repeating: 1, count: 70_000)
        #expect(throws: PostgresError.self) { try connection.query("SELECT $1", tooMany) }
        #expect(try connection.query("SELECT $1::text", ["ok"])[0][0] == "ok")
    }

    @Test func waitingOnAKilledConnectionThrows() throws {
        let configuration = try TestPostgres.serverConfiguration()
        let listener = try PostgresConnection.connect(configuration)
        defer { listener.close() }
        try listener.listen("killed")
        let killer = try PostgresConnection.connect(configuration)
        defer { killer.close() }
        try killer.query("SELECT pg_terminate_backend($1)", [listener.backendProcessID])
        var caught: PostgresError?
        // The termination notice may arrive while we wait; bounded loop, then it must have surfaced.
        for _ in 0..<50 {
            guard caught == nil else { break }
            do {
                _ = try listener.waitForNotifications(timeout: .milliseconds(200))
            } catch {
                caught = error
            }
        }
        #expect(caught?.code == .connectionClosed)
    }
}
