#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with `posix_spawn`, for tests that run the real executables (the projector, the
/// cluster script) and kill them.
///
/// Its standard output and error go to files, so nothing blocks on a full pipe and a test can read what it
/// printed at any time. Every wait is bounded.
public final class ChildProcess: @unchecked Sendable {
    /// How a child ended.
    public enum Termination: Sendable, Hashable, CustomStringConvertible {
        /// It exited with this status.
        case exited(Int32)
        /// A signal ended it.
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let status): "exited with status \(status)"
            case .signaled(let signal): "killed by signal \(signal)"
            }
        }
    }

    /// Why a child could not be started or waited for.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String

        public init(description: String) { self.description = description }
    }

    /// The child's process id.
    public let pid: Int32
    /// The file holding its standard output.
    public let standardOutputPath: String
    /// The file holding its standard error.
    public let standardErrorPath: String
    private var termination: Termination?

    private init(pid: pid_t, standardOutputPath: String, standardErrorPath: String) {
        self.pid = pid
        self.standardOutputPath = standardOutputPath
        self.standardErrorPath = standardErrorPath
    }

    /// Starts `executable` (a path) with `arguments`, in the current environment plus `environment`.
    /// - Parameter outputPrefix: the output files are `<prefix>.stdout` and `<prefix>.stderr` (truncated).
    public static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], outputPrefix: String
    ) throws -> ChildProcess {
        let stdoutPath = outputPrefix + ".stdout"
        let stderrPath = outputPrefix + ".stderr"
        #if canImport(Glibc)
        var actions = posix_spawn_file_actions_t()
        #else
        var actions: posix_spawn_file_actions_t?
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var variables: [String: String] = [:]
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                variables[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            cursor += 1
        }
        for (key, value) in environment { variables[key] = value }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else {
            throw Failure(description: "posix_spawn \(executable) failed: \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid, standardOutputPath: stdoutPath, standardErrorPath: stderrPath)
    }

    /// Sends `signal` (e.g. `SIGKILL`, `SIGTERM`) unless the child has already been reaped.
    public func send(_ signal: Int32) {
        guard termination == nil else { return }
        kill(pid, signal)
    }

    /// Waits up to `timeoutMilliseconds` for the child to end; `nil` when it still runs.
    @discardableResult
    public func wait(timeoutMilliseconds: Int) -> Termination? {
        if let termination { return termination }
        for _ in 0...max(0, timeoutMilliseconds / 10) {
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid {
                // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
                let signal = status & 0x7f
                termination = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
                return termination
            }
            if reaped < 0 { return nil }
            usleep(10_000)
        }
        return nil
    }

    /// Kills the child with SIGKILL and reaps it (cleanup after a failed test; never leaves a zombie).
    public func killAndReap() {
        send(SIGKILL)
        wait(timeoutMilliseconds: 10_000)
    }

    /// What the child wrote to its standard output so far.
    public var standardOutput: String { Self.read(standardOutputPath) }
    /// What the child wrote to its standard error so far.
    public var standardError: String { Self.read(standardErrorPath) }

    /// Runs `executable` to completion (bounded by `timeoutMilliseconds`, then killed) and returns how it ended
    /// with its standard output.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], outputPrefix: String,
        timeoutMilliseconds: Int = 120_000
    ) throws -> (termination: Termination, output: String, errors: String) {
        let child = try spawn(executable, arguments, environment: environment, outputPrefix: outputPrefix)
        guard let termination = child.wait(timeoutMilliseconds: timeoutMilliseconds) else {
            child.killAndReap()
            throw Failure(description: "\(executable) did not finish within \(timeoutMilliseconds) ms; "
                + "stderr: \(child.standardError.suffix(2_000))")
        }
        return (termination, child.standardOutput, child.standardError)
    }

    /// A file's content as UTF-8 text, empty when it cannot be read.
    public static func read(_ path: String) -> String {
        guard let file = fopen(path, "r") else { return "" }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A fresh private directory for a test's files (under `TMPDIR` or `/tmp`).
    public static func temporaryDirectory(prefix: String) throws -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw Failure(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        return String(cString: created)
    }
}
