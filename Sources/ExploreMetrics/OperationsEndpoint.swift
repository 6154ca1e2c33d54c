/// What the operations HTTP port answers, as a pure function of the request: `GET /metrics` (Prometheus text),
/// `GET /healthz` (200 while the process runs), `GET /readyz` (200 once the service can answer searches, else
/// 503). `HEAD` is accepted wherever `GET` is. Other paths get 404, other methods 405.
public struct OperationsEndpoint: Sendable {
    /// An answer: status code, content type and body.
    public struct Response: Sendable, Hashable {
        public var status: Int
        public var contentType: String
        public var body: [UInt8]

        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        init(status: Int, text: String) {
            self.init(status: status, body: Array(text.utf8))
        }
    }

    /// Whether the service is ready; `nil` when it is, else the reason (one line).
    public typealias Readiness = @Sendable () -> String?

    /// The Prometheus text exposition format, version 0.0.4.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    let readiness: Readiness
    let scrape: @Sendable () -> [UInt8]

    /// - Parameters:
    ///   - readiness: `nil` when ready, else why not.
    ///   - scrape: the metrics in the Prometheus text format.
    public init(readiness: @escaping Readiness, scrape: @escaping @Sendable () -> [UInt8]) {
        self.readiness = readiness
        self.scrape = scrape
    }

    /// Answers `method` on `uri` (the query string is ignored).
    public func respond(method: String, uri: String) -> Response {
        let path = String(uri.prefix { $0 != "?" })
        guard ["/metrics", "/healthz", "/readyz"].contains(path) else {
            return Response(status: 404, text: "not found; try /metrics, /healthz or /readyz\n")
        }
        guard method == "GET" || method == "HEAD" else {
            return Response(status: 405, text: "method not allowed; use GET\n")
        }
        switch path {
        case "/metrics":
            return Response(status: 200, contentType: Self.prometheusContentType, body: scrape())
        case "/healthz":
            return Response(status: 200, text: "ok\n")
        default:
            if let reason = readiness() {
                return Response(status: 503, text: "not ready: \(reason)\n")
            }
            return Response(status: 200, text: "ready\n")
        }
    }
}
