import NIOCore
import NIOPosix

/// A minimal HTTP/1.1 client for the tests: one request per connection (`Connection: close`), the whole answer
/// read until the server closes.
struct HTTPAnswer {
    var status: Int
    var headers: [String: String]
    var body: String
}

enum HTTPTestClient {
    static func request(_ path: String, port: Int) async throws -> HTTPAnswer {
        try await request("GET", path, port: port)
    }

    static func request(_ method: String, _ path: String, port: Int) async throws -> HTTPAnswer {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let raw = try await channel.executeThenClose { inbound, outbound in
            let request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            try await outbound.write(ByteBuffer(string: request))
            var bytes: [UInt8] = []
            for try await chunk in inbound {
                bytes += chunk.readableBytesView
                guard bytes.count < 16 << 20 else { break }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        guard let split = raw.range(of: "\r\n\r\n") else { throw HTTPTestError.malformed(raw) }
        let lines = raw[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw HTTPTestError.malformed(raw) }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[line[..<colon].lowercased()] = value
        }
        return HTTPAnswer(status: status, headers: headers, body: String(raw[split.upperBound...]))
    }

    enum HTTPTestError: Error { case malformed(String) }
}

extension String {
    /// The value of the Prometheus sample whose line starts with `series` (`name` or `name{labels}`).
    func sample(_ series: String) -> Double? {
        for line in split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).split(separator: " ").first ?? "")
        }
        return nil
    }
}
