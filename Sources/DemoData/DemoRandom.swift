/// SplitMix64: tiny, fast and fully deterministic on every platform, so a seed names one sequence forever.
/// Shared by the demo data, the benchmark's workload and the property tests, which print their seeds.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Starts the sequence named by `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The demo data's generator: SplitMix64 on one stream of a seed, plus the distributions the data set draws from.
///
/// Each listing gets its own stream derived from `(seed, index)`, which makes `listing(at:)` random access and
/// lets generation run in any order or in parallel with identical results.
struct DemoRandom: RandomNumberGenerator {
    private var base: SplitMix64

    init(seed: UInt64, stream: UInt64 = 0) {
        base = SplitMix64(seed: seed &+ stream &* 0x9E37_79B9_7F4A_7C15)
        _ = base.next()
    }

    mutating func next() -> UInt64 {
        base.next()
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal by Box–Muller.
    mutating func normal() -> Double {
        let u = max(unit(), 0x1.0p-53)
        let v = unit()
        return (-2 * _log(u)).squareRoot() * _cos(2 * Double.pi * v)
    }

    /// Picks an index with the given cumulative weights (last element is the total).
    mutating func pick(cumulative: [Double]) -> Int {
        let target = unit() * cumulative[cumulative.count - 1]
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] > target { high = mid } else { low = mid + 1 }
        }
        return low
    }
}

// The standard library has no transcendental functions without Foundation; these come from the C library,
// which every Swift platform links.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@inline(__always) func _log(_ x: Double) -> Double { log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { cos(x) }
@inline(__always) func _exp(_ x: Double) -> Double { exp(x) }
@inline(__always) func _pow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
