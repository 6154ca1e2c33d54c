import Dispatch
import ExploreServer
import ExploreService
import Foundation
import Logging
import Postgres
import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Logs go to stderr through swift-log; bootstrapped once per process.
enum ServeLogging {
    private static let once: Void = {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
    }()

    static func bootstrap() { _ = once }

    /// The command's own log lines (signals, the operations port).
    static var logger: Logger {
        bootstrap()
        return Logger(label: "explore.serve")
    }
}

/// Reads the admin token from a file: trimmed of surrounding whitespace, an empty file is an error.
func readAdminToken(path: String) throws(CommandFailure) -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CommandFailure("cannot read the admin token file \(path)")
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw CommandFailure("the admin token file \(path) is not UTF-8 text")
    }
    let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !token.isEmpty else { throw CommandFailure("the admin token file \(path) is empty") }
    return token
}

/// Parses `HOST:PORT` (the host may be a bracketed IPv6 address).
func parseListenAddress(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":") else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else {
        return nil
    }
    return (host, port)
}

/// Calls `handler` with the signal's name (`SIGINT`, `SIGTERM`) on each SIGINT or SIGTERM; the sources must be
/// kept alive while the process runs.
func onTerminationSignal(_ handler: @escaping @Sendable (String) -> Void) -> [any DispatchSourceSignal] {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let sources = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")].map { number, name in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .main)
        source.setEventHandler { handler(name) }
        return source
    }
    for source in sources { source.resume() }
    return sources
}
