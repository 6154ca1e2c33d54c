#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks `condition` up to `attempts` times (default: for about a minute), sleeping `intervalMilliseconds`
/// between checks; returns whether it held. Tests wait on other threads and processes through it, bounded so a
/// hung wait fails instead of hanging the suite. Blocking: call it off the cooperative pool.
@discardableResult
public func eventually(
    attempts: Int = 3_000, everyMilliseconds intervalMilliseconds: Int = 20, _ condition: () throws -> Bool
) rethrows -> Bool {
    for attempt in 0..<attempts {
        if try condition() { return true }
        if attempt + 1 < attempts { usleep(useconds_t(intervalMilliseconds * 1_000)) }
    }
    return false
}
