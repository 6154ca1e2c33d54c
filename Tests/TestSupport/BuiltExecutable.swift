#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The package's executables as `swift build` leaves them, for tests that run them as processes.
public enum BuiltExecutable {
    /// The path of `name` next to the test bundle (or one directory up, where some toolchains put the bundle
    /// inside its own directory); `nil` when it has not been built.
    public static func path(_ name: String) -> String? {
        var parts = CommandLine.arguments[0].split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast()
        let directory = parts.joined(separator: "/")
        return [directory, directory + "/.."].map { $0 + "/" + name }.first { access($0, X_OK) == 0 }
    }
}
