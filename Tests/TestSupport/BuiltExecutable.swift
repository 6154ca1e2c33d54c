import Foundation

/// The package's executables as `swift build` leaves them, for tests that run them as processes.
public enum BuiltExecutable {
    /// How a run ended and what it printed.
    public struct Outcome: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// The path of `name` next to the test bundle (or one directory up, where some toolchains put the bundle
    /// inside its own directory); `nil` when it has not been built.
    public static func path(_ name: String) -> String? {
        var parts = CommandLine.arguments[0].split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast()
        let directory = parts.joined(separator: "/")
        return [directory, directory + "/.."].map { $0 + "/" + name }.first { access($0, X_OK) == 0 }
    }

    /// Runs the built `name` with `arguments` (in `directory` when given) to completion and collects its output.
    /// `EXPLORE_POSTGRES_URL` is removed from its environment, so only the arguments name a database. Blocks:
    /// call it off the cooperative pool. For short outputs: stdout is read to its end before stderr.
    /// - Throws: when the executable has not been built or cannot be started.
    public static func run(
        _ arguments: [String], executable name: String = "explore-projector", in directory: String? = nil
    ) throws -> Outcome {
        guard let path = path(name) else {
            throw ChildProcess.Failure(description: "build \(name) first (swift build)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "EXPLORE_POSTGRES_URL")
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }
}
