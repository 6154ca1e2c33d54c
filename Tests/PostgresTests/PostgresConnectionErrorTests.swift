import Postgres
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("PostgreSQL connection errors", .serialized, .timeLimit(.minutes(2)))
struct PostgresConnectionErrorTests {
    @Test func wrongPasswordIsAnAuthenticationFailure() throws {
        var configuration = try TestPostgres.serverConfiguration()
        configuration.password = "definitely-wrong"
        let error = #expect(throws: PostgresError.self) { try PostgresConnection.connect(configuration) }
        #expect(error?.code == .authenticationFailed)
        #expect(error?.sqlState == "28P01")
        #expect(error?.message.contains("password authentication failed for user \"postgres\"") == true)
        #expect(error?.description.contains("definitely-wrong") == false)
        #expect(error?.description.contains("\n") == false)
    }

    @Test func unknownRoleIsAnAuthenticationFailure() throws {
        var configuration = try TestPostgres.serverConfiguration()
        configuration.user = TestPostgres.uniqueName(prefix: "nobody")
        let error = #expect(throws: PostgresError.self) { try PostgresConnection.connect(configuration) }
        #expect(error?.code == .authenticationFailed)
        #expect(error?.message.contains(configuration.user) == true)
    }

    @Test func unknownDatabaseIsNamed() throws {
        let configuration = try TestPostgres.serverConfiguration().with(database: "no_such_database_here")
        let error = #expect(throws: PostgresError.self) { try PostgresConnection.connect(configuration) }
        #expect(error?.code == .connectionFailed)
        #expect(error?.sqlState == "3D000")
        #expect(error?.message.hasPrefix("database \"no_such_database_here\" does not exist") == true)
    }

    @Test func serverDownIsConnectionRefused() throws {
        var configuration = try TestPostgres.serverConfiguration()
        configuration.port = try Self.closedPort()
        let error = #expect(throws: PostgresError.self) { try PostgresConnection.connect(configuration) }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message
            == "could not connect to 127.0.0.1:\(configuration.port): connection refused (is the server running?)")
    }

    @Test func badURLsAreRejectedBeforeConnecting() {
        for url in [
            "", "http://host/db", "postgres://host:notaport/db", "postgres://host:70000/db", "postgres://host:-1/db",
            "postgres://us%zzer@host/db", "postgres://user@[::1/db", "postgres://host/db?novalue",
            "postgres://user:p%C3@host/db", "postgres://host/d%00b",
        ] {
            let error = #expect(throws: PostgresError.self, "\(url)") { try PostgresConfiguration(url: url) }
            #expect(error?.code == .invalidURL)
            #expect(error?.message.hasPrefix("invalid PostgreSQL URL: ") == true)
        }
    }

    @Test func unknownOptionFailsClearly() throws {
        var configuration = try TestPostgres.serverConfiguration()
        configuration.options["no_such_option"] = "1"
        let error = #expect(throws: PostgresError.self) { try PostgresConnection.connect(configuration) }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("no_such_option") == true)
    }

    /// A loopback port nobody listens on: bind port 0, read the port, close the socket.
    static func closedPort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        defer { Glibc.close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(descriptor, generic, length) == 0 && getsockname(descriptor, generic, &length) == 0
            }
        }
        try #require(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
