import Foundation
import Postgres
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The built `explore-projector` as a child process: `serve` with the operations port against a test database,
/// `status --json`, `demo-writer`, and graceful stops on SIGTERM and SIGINT. `swift build` (which scripts/test
/// runs first) puts the executable next to the test bundle.
@Suite("explore-projector serve as a process", .serialized, .timeLimit(.minutes(5)))
struct ServeProcessTests {
    /// The built `explore-projector` (a path that does not exist when it has not been built).
    static var executable: URL {
        URL(fileURLWithPath: BuiltExecutable.path("explore-projector") ?? "explore-projector (not built)")
    }

    /// A running child process whose stdout and stderr are collected as they arrive.
    final class Child: @unchecked Sendable {
        // Safe: `stdout` and `stderr` are read and written only while holding `lock`.
        let process = Process()
        private let lock = NSLock()
        private var stdout = ""
        private var stderr = ""

        init(_ arguments: [String]) throws {
            try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.executable.path),
                         "build explore-projector first (swift build)")
            process.executableURL = ServeProcessTests.executable
            process.arguments = arguments
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            out.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                self?.lock.withLock { self?.stdout += String(decoding: data, as: UTF8.self) }
            }
            err.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                self?.lock.withLock { self?.stderr += String(decoding: data, as: UTF8.self) }
            }
            try process.run()
        }

        var output: (stdout: String, stderr: String) { lock.withLock { (stdout, stderr) } }

        /// Waits (bounded) until stdout has a line starting with `prefix`; returns it.
        func awaitLine(startingWith prefix: String, seconds: Int = 120) async throws -> String {
            for _ in 0..<(seconds * 20) {
                if let line = output.stdout.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) {
                    return String(line)
                }
                guard process.isRunning else { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw ChildError.noLine(prefix, output.stdout, output.stderr)
        }

        /// Waits (bounded) for the process to exit; kills it and fails when it does not.
        func awaitExit(seconds: Int = 60) async throws -> Int32 {
            for _ in 0..<(seconds * 20) {
                guard process.isRunning else { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            if process.isRunning {
                process.interrupt()
                kill(process.processIdentifier, SIGKILL)
                throw ChildError.didNotExit(output.stderr)
            }
            process.waitUntilExit()
            // Let the pipes' last chunks arrive.
            try await Task.sleep(for: .milliseconds(100))
            return process.terminationStatus
        }

        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    enum ChildError: Error { case noLine(String, String, String), didNotExit(String) }

    /// Runs the executable to completion and returns its status and stdout.
    static func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try Child(arguments)
        let status = try await child.awaitExit(seconds: 120)
        return (status, child.output.stdout, child.output.stderr)
    }

    static func url(_ configuration: PostgresConfiguration) -> String { configuration.url }

    /// `GET path` on 127.0.0.1:port with a plain socket; returns the status code and the body.
    static func httpGet(_ path: String, port: Int) -> (status: Int, body: String)? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard send(fd, request, request.count, 0) == request.count else { return nil }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while bytes.count < 16 << 20 {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n"),
              let status = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        return (status, String(text[split.upperBound...]))
    }

    /// The value of a Prometheus sample without labels.
    static func sample(_ name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test("a signal while the service is still starting ends it at once with status 0")
    func signalWhileStarting() async throws {
        try await TestPostgres.withDatabase { configuration in
            try ProjectorFixtures.migrate(configuration)
            let blocker = try PostgresConnection.connect(configuration)
            defer { blocker.close() }
            try ProjectorFixtures.seed(blocker)
            // Hold the checkpoint table, so serve's start (building the projection) waits on the lock.
            try blocker.executeScript("BEGIN; LOCK TABLE explore.checkpoint IN ACCESS EXCLUSIVE MODE")
            let serve = try Child(["serve", "--database-url", Self.url(configuration), "--listen", "127.0.0.1:0",
                                   "--metrics-listen", "127.0.0.1:0"])
            defer { serve.stop() }
            let metricsLine = try await serve.awaitLine(startingWith: "metrics on http://127.0.0.1:")
            let metricsPort = try #require(Int(metricsLine.split(separator: ":")[2].prefix { $0.isNumber }))
            let notReady = Self.httpGet("/readyz", port: metricsPort)
            #expect(notReady?.status == 503)
            #expect(notReady?.body.contains("loading the cache") == true)
            kill(serve.process.processIdentifier, SIGTERM)
            let status = try await serve.awaitExit()
            try blocker.executeScript("ROLLBACK")
            #expect(status == 0, "\(serve.output.stderr)")
            #expect(serve.output.stderr.contains("received SIGTERM while starting; exiting"), "\(serve.output.stderr)")
            #expect(!serve.output.stdout.contains("serving "))
        }
    }

    @Test("serve stops gracefully on a signal: exit 0, the log line, /readyz and STATS before", arguments: [
        "SIGTERM", "SIGINT",
    ])
    func gracefulStop(signalName: String) async throws {
        try await TestPostgres.withDatabase { configuration in
            try ProjectorFixtures.migrate(configuration)
            let connection = try PostgresConnection.connect(configuration)
            try ProjectorFixtures.seed(connection)
            connection.close()
            let tokenFile = FileManager.default.temporaryDirectory
                .appendingPathComponent("explore-token-\(UUID().uuidString)").path
            try "process-test-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: tokenFile) }

            let serve = try Child(["serve", "--database-url", Self.url(configuration), "--listen", "127.0.0.1:0",
                                   "--metrics-listen", "127.0.0.1:0", "--poll-interval-ms", "50",
                                   "--admin-token-file", tokenFile])
            defer { serve.stop() }
            let metricsLine = try await serve.awaitLine(startingWith: "metrics on http://127.0.0.1:")
            let metricsPort = try #require(Int(metricsLine.split(separator: ":")[2].prefix { $0.isNumber }))
            let serving = try await serve.awaitLine(startingWith: "serving ")
            let port = try #require(serving.split(separator: ":").last.flatMap { Int($0) })

            #expect(Self.httpGet("/healthz", port: metricsPort)?.status == 200)
            #expect(Self.httpGet("/readyz", port: metricsPort)?.status == 200)
            let metrics = try #require(Self.httpGet("/metrics", port: metricsPort))
            #expect(metrics.status == 200)
            #expect(Self.sample("explore_cache_listings", in: metrics.body) == 108, "\(metrics.body)")
            #expect(Self.sample("explore_feed_connected", in: metrics.body) == 1)

            // The demo writer changes listings; the service follows; STATS shows the feed; VERIFY is clean.
            let writer = try await Self.run(["demo-writer", "--database-url", Self.url(configuration),
                                             "--rate", "200/s", "--duration", "1", "--quiet"])
            #expect(writer.status == 0, "\(writer.stderr)")
            #expect(writer.stdout.hasPrefix("demo-writer: "), "\(writer.stdout)")
            let committed = writer.stdout.dropFirst("demo-writer: ".count).prefix { $0.isNumber }
            #expect(Int(committed) ?? 0 > 0, "\(writer.stdout)")
            #expect(writer.stdout.contains(" 0 failed"), "\(writer.stdout)")
            var report: [String: Any] = [:]
            for _ in 0..<200 {
                let status = try await Self.run(["status", "--server", "127.0.0.1:\(port)", "--json"])
                #expect(status.status == 0, "\(status.stderr)")
                report = try #require(
                    try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
                let feed = report["feed"] as? [String: Any]
                if (feed?["pending_changes"] as? Int) == 0 && report["feed_lag_ms"] as? Double == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let feed = try #require(report["feed"] as? [String: Any], "\(report)")
            #expect(report["protocol_version"] as? Int == 3)
            #expect(report["listings"] as? Int ?? 0 > 0)
            #expect(report["last_applied_change"] as? Int ?? 0 > 0)
            #expect(feed["connected"] as? Bool == true)
            #expect(feed["bootstrapped"] as? Bool == true)
            #expect(feed["pending_changes"] as? Int == 0)
            #expect(feed["batches"] as? Int ?? 0 > 0)
            // Admin requests take the token from a file (or `--admin-token`); none at all is a usage error.
            let unauthorized = try await Self.run(["status", "--server", "127.0.0.1:\(port)", "--verify"])
            #expect(unauthorized.status == 64 && unauthorized.stderr.contains("--admin-token-file"), "\(unauthorized)")
            let wrong = try await Self.run(["status", "--server", "127.0.0.1:\(port)", "--verify",
                                            "--admin-token", "not-the-token"])
            #expect(wrong.status == 1 && wrong.stderr.contains("unauthorized"), "\(wrong)")
            let verified = try await Self.run(["status", "--server", "127.0.0.1:\(port)", "--json",
                                               "--admin-token-file", tokenFile, "--verify"])
            let verifiedReport = try JSONSerialization.jsonObject(with: Data(verified.stdout.utf8)) as? [String: Any]
            #expect((verifiedReport?["verified"] as? [String: Any])?["mismatches"] as? Int == 0, "\(verified)")
            // `query` prints a table with readable times, and JSON with the protocol's microsecond counts.
            let table = try await Self.run(["query", "--server", "127.0.0.1:\(port)", "--sort", "newest",
                                            "--limit", "1", "--columns", "created_at"])
            #expect(table.status == 0, "\(table.stderr)")
            let tableLines = table.stdout.split(separator: "\n")
            #expect(tableLines.count >= 3 && tableLines[0].hasPrefix("id") && tableLines[0].hasSuffix("created_at"),
                    "\(table.stdout)")
            let time = tableLines.count >= 3 ? tableLines[2].split(separator: " ").last.map(String.init) : nil
            #expect(time.flatMap { ISO8601DateFormatter().date(from: $0) } != nil, "\(table.stdout)")
            let json = try await Self.run(["query", "--server", "127.0.0.1:\(port)", "--sort", "newest",
                                           "--limit", "1", "--columns", "created_at", "--json"])
            let page = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            let micros = try #require((page?["rows"] as? [[String: Any]])?.first?["created_at"] as? Int, "\(json.stdout)")
            let shown = try #require(time.flatMap { ISO8601DateFormatter().date(from: $0) })
            #expect(Int(shown.timeIntervalSince1970) == Int((Double(micros) / 1_000_000).rounded(.down)))
            let text = try await Self.run(["status", "--server", "127.0.0.1:\(port)"])
            let lines = text.stdout.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("feed connected ") && $0.hasSuffix(" yes") }, "\(text.stdout)")

            kill(serve.process.processIdentifier, signalName == "SIGTERM" ? SIGTERM : SIGINT)
            let exitStatus = try await serve.awaitExit()
            #expect(exitStatus == 0, "\(serve.output.stderr)")
            #expect(serve.output.stderr.contains("received \(signalName); stopping gracefully"),
                    "\(serve.output.stderr)")
            #expect(serve.output.stdout.hasSuffix("stopped\n"), "\(serve.output.stdout)")
        }
    }
}
