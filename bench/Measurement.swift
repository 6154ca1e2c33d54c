#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Histogram

/// Monotonic time in nanoseconds; cheap enough to wrap every single query.
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Checks `condition` up to `attempts` times, sleeping `microseconds` after each check that fails; returns
/// whether it held. Every wait of the benches on another thread or process is bounded through it.
@discardableResult
func poll(attempts: Int, everyMicroseconds microseconds: UInt32, _ condition: () throws -> Bool) rethrows -> Bool {
    for _ in 0..<attempts {
        if try condition() { return true }
        usleep(microseconds)
    }
    return false
}

/// The process's memory as the kernel sees it, so "bytes per listing" is measured rather than estimated.
enum ProcessMemory {
    /// Resident set size in bytes, from `/proc/self/statm` (second field, in pages); `nil` where unavailable.
    static func residentBytes() -> Int? {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Returns freed heap pages to the kernel so a later resident-set reading counts live data only.
    static func releaseFreedMemory() {
        // glibc's malloc_trim is not in the Glibc module map; look it up at run time and skip it elsewhere.
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
    }
}

/// CPU time as the kernel charges it, so a phase's wall time can be set against the work it took and the cores
/// the machine has.
enum ProcessCPU {
    /// This process's CPU time, every thread, user and system, in seconds.
    static func ownSeconds() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        let microseconds = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000
            + Int(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
        return Double(microseconds) / 1e6
    }

    /// The CPU time of PostgreSQL backend `pid` (one thread), in seconds, from `/proc/PID/schedstat`; `nil` unless
    /// a PostgreSQL process with that id runs on this machine (a remote server's process ids mean nothing here).
    static func postgresBackendSeconds(_ pid: Int) -> Double? {
        guard let name = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8), name.hasPrefix("postgres"),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8),
              let nanoseconds = stat.split(separator: " ").first.flatMap({ UInt64($0) })
        else { return nil }
        return Double(nanoseconds) / 1e9
    }

    /// The CPU time of the backends `pids` together; `nil` when one of them cannot be read.
    static func postgresBackendsSeconds(_ pids: [Int]) -> Double? {
        var total = 0.0
        for pid in pids {
            guard let seconds = postgresBackendSeconds(pid) else { return nil }
            total += seconds
        }
        return total
    }
}

/// Latency distribution of one query class, in nanoseconds.
struct LatencyRecorder {
    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)

    mutating func record(nanoseconds: UInt64) {
        _ = histogram.record(max(1, nanoseconds))
    }

    mutating func add(_ other: LatencyRecorder) {
        histogram.add(other.histogram)
    }

    var summary: LatencySummary {
        LatencySummary(
            count: Int(histogram.totalCount),
            p50Microseconds: Double(histogram.valueAtPercentile(50)) / 1_000,
            p99Microseconds: Double(histogram.valueAtPercentile(99)) / 1_000,
            p999Microseconds: Double(histogram.valueAtPercentile(99.9)) / 1_000,
            maxMicroseconds: Double(histogram.max) / 1_000,
            meanMicroseconds: histogram.mean / 1_000)
    }
}

/// Percentiles as reported in the table and the JSON file.
struct LatencySummary: Codable {
    var count: Int
    var p50Microseconds: Double
    var p99Microseconds: Double
    var p999Microseconds: Double
    var maxMicroseconds: Double
    var meanMicroseconds: Double
}
