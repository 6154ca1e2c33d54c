import ExploreClient
import ExploreQuery
import ExploreServer
import NIOCore
import Testing

/// ``ExploreClientPool`` against real servers: it outlives the connections it uses.
@Suite("Client pool", .serialized, .timeLimit(.minutes(2)))
struct ClientPoolTests {
    /// Asks random queries through the pool, `copies` of each at once, and compares with the index's answers.
    static func expectAnswers(_ pool: ExploreClientPool, _ index: ExploreIndex, copies: Int = 1) async throws {
        var rng = SystemRandomNumberGenerator()
        let answered = (0..<20).compactMap { _ -> (SearchQuery, SearchResult)? in
            let query = randomQuery(&rng)
            return (try? index.search(query)).map { (query, $0.projected()) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (query, expected) in answered {
                for _ in 0..<copies {
                    group.addTask {
                        let answer = try await pool.search(query)
                        #expect(answer == expected)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("a server restarted on the same port is served again without a new pool; a closed pool refuses")
    func servesAcrossARestart() async throws {
        let index = ExploreIndex(store: ExploreStore(bulk: demoRows))
        let first = try await ExploreServer.start(
            configuration: ExploreServerConfiguration(host: "127.0.0.1", port: 0), backend: index)
        let pool = ExploreClientPool(configuration: .init(host: "127.0.0.1", port: first.port, timeout: .seconds(5),
                                                          connections: 2))
        var second: ExploreServer?
        do {
            try await Self.expectAnswers(pool, index, copies: 3)

            // Down: requests fail with a connection error (no hang), whatever state each connection was in.
            await first.shutdown()
            for _ in 0..<4 {
                await #expect {
                    _ = try await pool.stats()
                } throws: { error in
                    [.connectionClosed, .connectFailed].contains((error as? ExploreClientError)?.code)
                }
            }

            // Up again on the same port: within the back-off (at most 5 s) the same pool answers again.
            second = try await ExploreServer.start(
                configuration: ExploreServerConfiguration(host: "127.0.0.1", port: first.port), backend: index)
            var answered = false
            for _ in 0..<140 {
                guard !answered else { break }
                answered = (try? await pool.ping()) != nil
                if !answered { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(answered, "the pool did not reconnect")
            try await Self.expectAnswers(pool, index, copies: 3)

            await pool.close()
            await #expect(throws: ExploreClientError.self) { _ = try await pool.ping() }
        } catch {
            await pool.close()
            await first.shutdown()
            await second?.shutdown()
            throw error
        }
        await second?.shutdown()
    }

    @Test("requests pass by a connection that cannot connect while another one serves")
    func passesByAFailingConnection() async throws {
        let index = ExploreIndex(store: ExploreStore(bulk: demoRows))
        // The server takes one connection: the pool's second one is refused at every attempt.
        try await withServer(ExploreServerConfiguration(host: "127.0.0.1", port: 0, maximumConnections: 1),
                             backend: index) { server in
            let pool = ExploreClientPool(configuration: .init(host: "127.0.0.1", port: server.port, connections: 2))
            var (answered, refused) = (0, 0)
            for _ in 0..<40 {
                do throws(ExploreClientError) {
                    _ = try await pool.stats()
                    answered += 1
                } catch {
                    // Refused at the handshake, or closed before it when the server's refusal wins the race.
                    #expect([.handshakeRefused, .connectFailed].contains(error.code), "\(error)")
                    refused += 1
                }
            }
            // Only requests that find the second connection ready for another attempt fail (one per back-off).
            #expect(answered >= 35 && refused >= 1, "answered \(answered), refused \(refused)")
            await pool.close()
        }
    }

    @Test("connections the server closes when idle are opened again by the next request")
    func reopensIdleClosedConnections() async throws {
        let index = ExploreIndex(store: ExploreStore(bulk: demoRows))
        // Not shorter: the timeout also runs from accepting a connection to its HELLO, which the whole suite
        // running on two cores delayed past one second (the handshake was refused with idle_timeout).
        try await withServer(ExploreServerConfiguration(host: "127.0.0.1", port: 0, idleTimeout: .seconds(2)),
                             backend: index) { server in
            let pool = ExploreClientPool(configuration: .init(host: "127.0.0.1", port: server.port, connections: 2))
            try await Self.expectAnswers(pool, index)
            // Two idle timeouts later both connections are gone; a plain ExploreClient would now fail.
            try await Task.sleep(for: .seconds(4.5))
            try await Self.expectAnswers(pool, index, copies: 2)
            await pool.close()
        }
    }
}
