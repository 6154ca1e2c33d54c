import CoreMetrics
public import Prometheus

/// The process's metrics backend: a Prometheus registry behind the swift-metrics API. Code elsewhere records
/// through swift-metrics only; this type renders what was recorded as Prometheus text for `/metrics`.
public final class MetricsExporter: Sendable {
    /// The registry every metric made through ``factory`` lands in.
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory writing into ``registry``.
    public let factory: PrometheusMetricsFactory

    /// Histogram buckets of every swift-metrics `Timer`: a search takes tens of microseconds, an admin
    /// operation seconds, so the buckets span both (the library's default starts at 5 ms).
    public static let durationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2_500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5), .seconds(30),
    ]

    /// Creates an exporter with its own registry.
    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.durationBuckets
        self.registry = registry
        self.factory = factory
    }

    /// Makes this exporter the backend of `MetricsSystem` for the whole process. Call at most once per process,
    /// before anything records (swift-metrics allows one bootstrap).
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(factory)
    }

    /// Everything recorded so far, in the Prometheus text exposition format.
    public func render() -> [UInt8] {
        registry.emitToBuffer()
    }
}
