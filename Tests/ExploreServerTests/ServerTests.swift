import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreWire
import NIOCore
import Testing

func randomQuery(_ rng: inout some RandomNumberGenerator) -> SearchQuery {
    var query = SearchQuery()
    if Bool.random(using: &rng) { query.filter.cities = Set(["Lisbon", "Porto", "Faro", "Braga"].filter { _ in Bool.random(using: &rng) }) }
    if Bool.random(using: &rng) { query.filter.priceMin = Int64.random(in: 0...400_000, using: &rng) }
    if Bool.random(using: &rng) { query.filter.priceMax = Int64.random(in: 300_000...2_000_000, using: &rng) }
    if Bool.random(using: &rng) { query.filter.listingTypes = [ListingType.allCases.randomElement(using: &rng)!] }
    query.sort = SortOrder.allCases.randomElement(using: &rng)!
    query.limit = Int.random(in: 1...50, using: &rng)
    if Bool.random(using: &rng) { query.start = .offset(Int.random(in: 0...100, using: &rng)) }
    query.includeTotal = Bool.random(using: &rng)
    if Bool.random(using: &rng) { query.facets = [.city] }
    query.columns = ColumnSet(rawValue: UInt16.random(in: 0...ColumnSet.all.rawValue, using: &rng))
    return query
}

@Suite("Explore server", .serialized, .timeLimit(.minutes(3)))
struct ServerTests {
    @Test("search, get, stats and ping over the wire equal the backend's direct answers")
    func endToEnd() async throws {
        let backend = ReferenceBackend(rows: demoRows)
        try await withServer(backend: backend) { server in
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            #expect(client.serverInfo.version == WireProtocol.supportedVersions.upperBound)
            #expect(client.serverInfo.features == .all)
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<200 {
                let query = randomQuery(&rng)
                let viaWire = try await client.search(query)
                #expect(viaWire == (try backend.search(query)).projected())
            }
            let ids: [ListingID] = [5, 1, 999_999, 17]
            let rows = try await client.get(ids: ids, columns: [.title, .city])
            #expect(rows == backend.rows(ids: ids).map { $0.projected(onto: [.title, .city]) })
            let stats = try await client.stats()
            #expect(stats.listingCount == UInt64(demoRows.count))
            #expect(stats.lastAppliedChange == 7)
            #expect(stats.openConnections == 1)
            #expect(try await client.ping([1, 2, 3]) == [1, 2, 3])
            await client.close()
        }
    }

    @Test("an unanswered request times out, the connection keeps serving, and later requests time out again")
    func clientTimeouts() async throws {
        let admin = GatedAdmin()
        var configuration = ExploreServerConfiguration()
        configuration.adminToken = "s3cret"
        try await withServer(configuration, admin: admin) { server in
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port, adminToken: "s3cret",
                                                         timeout: .seconds(1))
            // The admin operations wait at the gate, so only the client's timeout can end these two requests.
            do throws(ExploreClientError) {
                _ = try await client.rebuild()
                Issue.record("an unanswered REBUILD returned")
            } catch {
                #expect(error.code == .timeout)
            }
            #expect(try await client.ping([1]) == [1])
            do throws(ExploreClientError) {
                _ = try await client.verify()
                Issue.record("an unanswered VERIFY returned")
            } catch {
                #expect(error.code == .timeout)
            }
            // The late answers to the timed-out requests are ignored; the connection keeps working.
            admin.open()
            #expect(try await client.verify().checked == 1)
            #expect(try await client.ping([2]) == [2])
            await client.close()
        }
    }

    @Test("hundreds of pipelined requests on one connection over many connections all get their own answers, from tasks on the cooperative pool and on the connection's event loop")
    func pipelining() async throws {
        // A small data set keeps the reference's linear scans cheap in debug builds; the point is the transport.
        let backend = ReferenceBackend(rows: Array(demoRows.prefix(200)))
        try await withServer(backend: backend) { server in
            let clients = try await withThrowingTaskGroup(of: ExploreClient.self) { group in
                for _ in 0..<8 { group.addTask { try await ExploreClient.connect(host: "127.0.0.1", port: server.port) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
                for (index, client) in clients.enumerated() {
                    for request in 0..<150 {
                        group.addTask(executorPreference: request.isMultiple(of: 2) ? client.executor : nil) {
                            var query = SearchQuery(limit: 1 + (index * 150 + request) % 40)
                            query.start = .offset(request % 30)
                            query.columns = [.title, .priceFrom]
                            let answer = try await client.search(query)
                            return answer == (try backend.search(query)).projected() ? 0 : 1
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(mismatches == 0)
            #expect(server.openConnections == 8)
            for client in clients { await client.close() }
        }
    }

    @Test("invalid queries and disabled features get errors and the connection keeps working")
    func errorsKeepConnection() async throws {
        var configuration = ExploreServerConfiguration()
        configuration.features = FeatureFlags(enabledFilters: Set(FilterField.allCases).subtracting([.bedrooms]),
                                              enabledListingTypes: [.existing])
        try await withServer(configuration) { server in
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            #expect(client.serverInfo.features == configuration.features)
            await #expect(throws: ExploreClientError.self) { _ = try await client.search(SearchQuery(limit: 0)) }
            do throws(ExploreClientError) {
                _ = try await client.search(SearchQuery(limit: 0))
            } catch {
                #expect(error.queryError?.code == .limitOutOfRange)
            }
            var bedrooms = SearchQuery()
            bedrooms.filter.bedroomsMin = 2
            do throws(ExploreClientError) {
                _ = try await client.search(bedrooms)
                Issue.record("a disabled filter was accepted")
            } catch {
                #expect(error.serverError?.code == .disabled)
            }
            var developments = SearchQuery()
            developments.filter.listingTypes = [.development]
            do throws(ExploreClientError) {
                _ = try await client.search(developments)
                Issue.record("a disabled listing type was accepted")
            } catch {
                #expect(error.serverError?.code == .disabled)
            }
            let unfiltered = try await client.search(SearchQuery(limit: 100, columns: [.listingType]))
            #expect(!unfiltered.rows.isEmpty)
            #expect(unfiltered.rows.allSatisfy { $0.listingType == .existing })
            let stats = try await client.stats()
            #expect(stats.features == configuration.features)
            do throws(ExploreClientError) {
                _ = try await client.get(ids: Array(1...1001))
                Issue.record("too many ids accepted")
            } catch {
                #expect(error.serverError?.code == .tooManyIDs)
            }
            #expect(try await client.ping([9]) == [9])
            await client.close()
        }
    }

    @Test("admin operations need a configured token and the right one")
    func adminAuthorization() async throws {
        let admin = RecordingAdmin()
        try await withServer(admin: admin) { server in
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port, adminToken: "anything")
            do throws(ExploreClientError) {
                _ = try await client.rebuild()
                Issue.record("admin operation accepted without a server token")
            } catch {
                #expect(error.serverError?.code == .adminUnavailable)
            }
            await client.close()
        }
        var configuration = ExploreServerConfiguration()
        configuration.adminToken = "s3cret"
        try await withServer(configuration, admin: admin) { server in
            for token in [nil, "s3cre", "s3crex", "s3cret!", ""] as [String?] {
                let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port, adminToken: token)
                #expect(!client.serverInfo.adminGranted)
                do throws(ExploreClientError) {
                    _ = try await client.verify()
                    Issue.record("admin operation accepted with token \(token ?? "nil")")
                } catch {
                    #expect(error.serverError?.code == .unauthorized)
                }
                await client.close()
            }
            let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port, adminToken: "s3cret")
            #expect(client.serverInfo.adminGranted)
            #expect(try await client.rebuild() == RebuildReport(listingCount: 99, durationMicroseconds: 1))
            #expect(try await client.verify().checked == 99)
            await client.close()
        }
        #expect(admin.calls.withLock { $0 } == 2)
    }

    @Test("recoverable violations are answered and the connection stays open")
    func recoverableViolations() async throws {
        try await withServer { server in
            let connection = try await RawConnection.connect(port: server.port)
            var bytes = RawConnection.helloBytes()
            bytes += [0x00, 0x00, 0x00, 0x03, 0x42, 0x00, 0x07]       // unknown opcode 0x42, id 7
            bytes += [0x00, 0x00, 0x00, 0x04, 0x05, 0x00, 0x08, 0xAA] // STATS with a trailing byte, id 8
            bytes += [0x00, 0x00, 0x00, 0x03, 0x05, 0x01, 0x09]       // reserved flags, id 9
            bytes += RawConnection.frame(.hello(Hello()), id: 10)     // second HELLO
            bytes += RawConnection.frame(.ping([7]), id: 11)
            let (responses, closed) = try await connection.exchange(bytes, expecting: 6)
            #expect(!closed)
            #expect(responses.map(\.0) == [0, 7, 8, 9, 10, 11])
            let codes = responses.dropFirst().compactMap { response -> WireError.Code? in
                if case .error(let error) = response.1 { return error.code }
                return nil
            }
            #expect(codes == [.unknownOpcode, .malformedFrame, .invalidFlags, .duplicateHandshake])
            #expect(responses.last?.1 == .pong([7]))
        }
    }

    @Test("unrecoverable violations are answered, then the connection is closed")
    func fatalViolations() async throws {
        try await withServer { server in
            let cases: [([UInt8], WireError.Code)] = [
                (RawConnection.helloBytes() + [0x7F, 0xFF, 0xFF, 0xFF], .frameTooLarge),
                (RawConnection.helloBytes() + [0x00, 0x00, 0x00, 0x00], .frameTooLarge),
                (RawConnection.frame(.ping([]), id: 1), .badHandshake),
                ([0x00, 0x00, 0x00, 0x07, 0x01, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20], .badHandshake),
                (RawConnection.helloBytes(minimumVersion: WireProtocol.supportedVersions.upperBound + 1,
                                          maximumVersion: 9), .unsupportedVersion),
            ]
            for (bytes, code) in cases {
                let connection = try await RawConnection.connect(port: server.port)
                let responses = try await connection.exchangeUntilClosed(bytes)
                guard case .error(let error) = responses.last?.1 else {
                    Issue.record("no error frame for \(code)")
                    continue
                }
                #expect(error.code == code)
            }
        }
    }

    @Test("connections over the limit are refused; idle connections are closed")
    func connectionLimits() async throws {
        // Every wait below ends on an event (an answer, a close), never on elapsed time. The limit is checked on
        // a server whose idle timeout cannot fire during the test, so the admitted connections stay open while the
        // third one connects, however loaded the machine.
        var limited = ExploreServerConfiguration()
        limited.maximumConnections = 2
        try await withServer(limited) { server in
            let first = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            let second = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
            // Both handshakes completed, so both connections are admitted. The third sends nothing: the refusal is
            // written on accept, and a server that closed with our bytes unread would reset the connection, which
            // can discard the error frame before it is read.
            let third = try await RawConnection.connect(port: server.port)
            let refused = try await third.exchangeUntilClosed([])
            #expect(refused.map(\.1.errorCode) == [.tooManyConnections])
            #expect(refused.first?.0 == 0)
            // A client sends its HELLO at once, possibly while the server is already refusing: the server lingers
            // (end-of-file, then waits for the client's close) instead of resetting, so the refusal is read.
            do throws(ExploreClientError) {
                let extra = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
                await extra.close()
                Issue.record("third connection accepted")
            } catch where error.code == .handshakeRefused {
                #expect(error.serverError?.code == .tooManyConnections)
            } catch {
                // Known race, seen under load: the client can see the close before it has read the refusal
                // frame (the raw connection above checks the frame itself): during the handshake
                // (`connection_closed`) or before it could start (`connect_failed`). Anything else is a bug.
                #expect([.connectionClosed, .connectFailed].contains(error.code), "\(error)")
            }
            // The refusal cost the admitted connections nothing.
            #expect(try await first.ping([1]) == [1])
            #expect(try await second.ping([2]) == [2])
            await first.close()
            await second.close()
        }
        // Idle connections: a server of their own, so the connections above (whose close the server sees
        // asynchronously) cannot count against its limit. The handshake's answer proves the connection is
        // established before it goes idle; the test then waits for the server to close it.
        var idleConfiguration = ExploreServerConfiguration()
        idleConfiguration.idleTimeout = .seconds(1)
        try await withServer(idleConfiguration) { server in
            let idle = try await RawConnection.connect(port: server.port)
            let responses = try await idle.exchangeUntilClosed(RawConnection.helloBytes())
            #expect(responses.map(\.1.errorCode) == [nil, .idleTimeout])
            guard case .helloAccepted = responses.first?.1 else {
                Issue.record("the idle connection was not established first: \(responses)")
                return
            }
        }
    }

    @Test("graceful shutdown tells connected clients and closes them")
    func gracefulShutdown() async throws {
        let server = try await ExploreServer.start(
            configuration: ExploreServerConfiguration(host: "127.0.0.1", port: 0),
            backend: ReferenceBackend(rows: demoRows))
        let connection = try await RawConnection.connect(port: server.port)
        let client = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
        try await client.ping()
        // Both clients are connected and done with their requests: a request still on its way when the server
        // closes can turn the close into a reset, which is not what this test is about.
        let received = try await connection.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: RawConnection.helloBytes()))
            var iterator = inbound.makeAsyncIterator()
            var responses: [WireResponse] = []
            guard var accepted = try await iterator.next() else { return responses }
            let header = try WireCodec.decodeHeader(&accepted)
            responses.append(try WireCodec.decodeResponse(header, &accepted))
            await server.shutdown()
            while var body = try await iterator.next() {
                let header = try WireCodec.decodeHeader(&body)
                responses.append(try WireCodec.decodeResponse(header, &body))
            }
            return responses
        }
        #expect(received.count == 2)
        #expect(received.last == .error(WireError(.shuttingDown, "the server is shutting down")))
        await #expect(throws: ExploreClientError.self) { try await client.ping() }
        await client.close()
    }

    @Test("graceful shutdown while requests keep arriving: every answer and the reason arrive, then end-of-file, no reset")
    func gracefulShutdownWhileRequestsArrive() async throws {
        let server = try await ExploreServer.start(
            configuration: ExploreServerConfiguration(host: "127.0.0.1", port: 0),
            backend: ReferenceBackend(rows: Array(demoRows.prefix(100))))
        let connection = try await RawConnection.connect(port: server.port)
        let received = try await connection.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: RawConnection.helloBytes()))
            var iterator = inbound.makeAsyncIterator()
            guard var accepted = try await iterator.next() else { return [(UInt32, WireResponse)]() }
            _ = try WireCodec.decodeResponse(try WireCodec.decodeHeader(&accepted), &accepted)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                // Pings in bursts, still being written when the server shuts down (their writes may then fail).
                group.addTask {
                    var id: UInt32 = 1
                    for _ in 0..<400 {
                        var bytes: [UInt8] = []
                        for _ in 0..<25 {
                            bytes += RawConnection.frame(.ping([1, 2, 3]), id: id)
                            id += 1
                        }
                        do { try await outbound.write(ByteBuffer(bytes: bytes)) } catch { return }
                        await Task.yield()
                    }
                }
                var responses: [(UInt32, WireResponse)] = []
                var shutdown: Task<Void, Never>?
                // A reset would make this read throw instead of ending.
                while var body = try await iterator.next() {
                    let header = try WireCodec.decodeHeader(&body)
                    responses.append((header.requestID, try WireCodec.decodeResponse(header, &body)))
                    if responses.count == 200 { shutdown = Task { await server.shutdown() } }
                }
                group.cancelAll()
                await shutdown?.value
                return responses
            }
        }
        #expect(received.count > 200, "the shutdown starts after 200 answers")
        #expect(received.last?.1 == .error(WireError(.shuttingDown, "the server is shutting down")))
        let pongs = received.dropLast()
        #expect(pongs.allSatisfy { $0.1 == .pong([1, 2, 3]) })
        #expect(pongs.map(\.0) == Array(1...UInt32(pongs.count)), "answers are for the requests in order, none lost")
    }
}

@Suite("Server back-pressure", .serialized, .timeLimit(.minutes(3)))
struct BackPressureTests {
    @Test("a client that does not read its answers is held back; its answers all arrive later, in order")
    func slowReader() async throws {
        let backend = ReferenceBackend(rows: Array(demoRows.prefix(1_000)))
        try await withServer(backend: backend) { server in
            let slow = try await RawConnection.connect(port: server.port)
            var bytes = RawConnection.helloBytes()
            let requests = 300
            for id in 1...requests {
                bytes += RawConnection.frame(.search(SearchQuery(limit: 1_000, columns: .all)), id: UInt32(id))
            }
            let answers = try await slow.channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(bytes: bytes))
                // While the slow connection's answers pile up unread, another connection is served normally.
                let other = try await ExploreClient.connect(host: "127.0.0.1", port: server.port)
                for _ in 0..<20 { #expect(try await other.ping([1]) == [1]) }
                await other.close()
                var ids: [UInt32] = []
                var iterator = inbound.makeAsyncIterator()
                while ids.count < requests + 1, var body = try await iterator.next() {
                    let header = try WireCodec.decodeHeader(&body)
                    let response = try WireCodec.decodeResponse(header, &body)
                    if case .searchResult(let result) = response { #expect(result.rows.count == 1_000) }
                    ids.append(header.requestID)
                }
                return ids
            }
            #expect(answers == [0] + (1...UInt32(requests)).map { $0 })
        }
    }
}
