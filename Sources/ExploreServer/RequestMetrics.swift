import CoreMetrics
import ExploreWire
import Foundation

/// The server's request metrics, through the swift-metrics API (the process chooses the backend; the server
/// knows nothing of Prometheus):
///
/// - `explore_requests_total{opcode, result}`: requests answered, `result` = `ok` or the error code's name;
/// - `explore_request_duration_seconds{opcode}`: time from decoding a request to writing its answer;
/// - `explore_connections_open` and `explore_connections_rejected_total`.
///
/// Handles for the known opcodes are made once, so recording a request is a dictionary lookup plus the
/// backend's own update; error counters are made on first use.
final class RequestMetrics: @unchecked Sendable {
    // Safe: `errorCounters` is read and written only while holding `lock`; everything else is immutable.
    private let factory: any MetricsFactory
    private let timers: [UInt8: CoreMetrics.Timer]
    private let okCounters: [UInt8: Counter]
    private let lock = NSLock()
    private var errorCounters: [ErrorKey: Counter] = [:]
    /// Open connections.
    let openConnections: Meter
    /// Connections refused at the connection limit.
    let rejectedConnections: Counter

    private struct ErrorKey: Hashable {
        var opcode: UInt8?
        var code: UInt16
    }

    static let requestsLabel = "explore_requests_total"
    static let durationLabel = "explore_request_duration_seconds"

    /// Request opcodes and their label values.
    static let opcodeNames: [UInt8: String] = [
        Opcode.hello.rawValue: "hello", Opcode.ping.rawValue: "ping", Opcode.search.rawValue: "search",
        Opcode.get.rawValue: "get", Opcode.stats.rawValue: "stats", Opcode.rebuild.rawValue: "rebuild",
        Opcode.verify.rawValue: "verify",
    ]

    init(factory: any MetricsFactory) {
        self.factory = factory
        var timers: [UInt8: CoreMetrics.Timer] = [:]
        var okCounters: [UInt8: Counter] = [:]
        for (opcode, name) in Self.opcodeNames {
            timers[opcode] = CoreMetrics.Timer(label: Self.durationLabel, dimensions: [("opcode", name)],
                                               factory: factory)
            okCounters[opcode] = Counter(label: Self.requestsLabel, dimensions: [("opcode", name), ("result", "ok")],
                                         factory: factory)
        }
        self.timers = timers
        self.okCounters = okCounters
        openConnections = Meter(label: "explore_connections_open", factory: factory)
        rejectedConnections = Counter(label: "explore_connections_rejected_total", factory: factory)
    }

    /// Records one answered request; `opcode` is `nil` when the frame's header could not be read.
    func record(opcode: Opcode?, error: WireError.Code?, nanoseconds: UInt64) {
        let known = opcode.flatMap { Self.opcodeNames[$0.rawValue] != nil ? $0.rawValue : nil }
        if let known { timers[known]?.recordNanoseconds(Int64(clamping: nanoseconds)) }
        guard let error else {
            if let known { okCounters[known]?.increment() }
            return
        }
        let key = ErrorKey(opcode: known, code: error.rawValue)
        let counter = lock.withLock { () -> Counter in
            if let counter = errorCounters[key] { return counter }
            let name = known.flatMap { Self.opcodeNames[$0] } ?? "unknown"
            let counter = Counter(label: Self.requestsLabel, dimensions: [("opcode", name), ("result", "\(error)")],
                                  factory: factory)
            errorCounters[key] = counter
            return counter
        }
        counter.increment()
    }
}
