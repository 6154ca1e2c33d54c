public import CoreMetrics
public import ExploreWire
public import NIOCore

/// Limits and feature flags of an ``ExploreServer``.
public struct ExploreServerConfiguration: Sendable {
    /// Address to bind; tests and the demo use 127.0.0.1.
    public var host: String
    /// Port to bind; 0 picks a free one (read it back from ``ExploreServer/port``).
    public var port: Int
    /// Largest accepted frame body, in bytes.
    public var maximumFrameSize: Int
    /// Connections beyond this get `too_many_connections` and are closed.
    public var maximumConnections: Int
    /// A connection with nothing in flight and no request for this long is closed with `idle_timeout`.
    public var idleTimeout: TimeAmount
    /// Requests processed concurrently per connection before the server stops reading that socket.
    public var maximumInFlight: Int
    /// Largest number of ids in one `GET`.
    public var maximumGetIDs: Int
    /// Admin token for `REBUILD` / `VERIFY`; `nil` disables admin operations.
    public var adminToken: String?
    /// Enabled filters and listing types.
    public var features: FeatureFlags
    /// Reported in `HELLO_OK` and `STATS`.
    public var serverVersion: String
    /// How long graceful shutdown waits for requests in flight before closing connections anyway.
    public var shutdownGracePeriod: TimeAmount
    /// Where request and connection metrics go; `nil` uses the process's `MetricsSystem` (a no-op until the
    /// process bootstraps one).
    public var metricsFactory: (any MetricsFactory)? = nil

    public init(host: String = "127.0.0.1", port: Int = 7700,
                maximumFrameSize: Int = WireProtocol.defaultMaximumFrameSize, maximumConnections: Int = 1024,
                idleTimeout: TimeAmount = .seconds(300), maximumInFlight: Int = 128, maximumGetIDs: Int = 1000,
                adminToken: String? = nil, features: FeatureFlags = .all, serverVersion: String = "0.1.0",
                shutdownGracePeriod: TimeAmount = .seconds(5)) {
        self.host = host
        self.port = port
        self.maximumFrameSize = maximumFrameSize
        self.maximumConnections = maximumConnections
        self.idleTimeout = idleTimeout
        self.maximumInFlight = maximumInFlight
        self.maximumGetIDs = maximumGetIDs
        self.adminToken = adminToken
        self.features = features
        self.serverVersion = serverVersion
        self.shutdownGracePeriod = shutdownGracePeriod
    }
}
