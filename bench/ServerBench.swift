import ExploreClient
import ExploreQuery
import ExploreServer
import ExploreWire
import Foundation
import Histogram
import NIOCore
import NIOPosix

/// Results of one `bench --server` run.
struct ServerBenchmarkReport: Sendable, Codable, CustomStringConvertible {
    var listings: Int
    var connections: Int
    var pipelineDepth: Int
    /// Closed-loop run: every connection keeps `pipelineDepth` requests in flight for the whole duration.
    var maximumThroughput: Double
    var maximumLoadP50Micros: UInt64
    var maximumLoadP99Micros: UInt64
    /// Open-loop run at half the measured maximum; latency measured from each request's scheduled send time,
    /// so a stalled server cannot hide its queueing (no coordinated omission).
    var halfLoadTargetRate: Double
    var halfLoadAchievedRate: Double
    var halfLoadP50Micros: UInt64
    var halfLoadP99Micros: UInt64
    /// The same open loop at fixed lower rates (``ServerBenchmark/curveRates``): how latency grows with load
    /// while client and server share the machine's cores.
    var lighterLoads: [LoadPoint]
    /// The same queries run in-process on the index, one at a time.
    var inProcessP50Micros: UInt64
    var inProcessMeanMicros: Double
    /// One connection, one request at a time: the round trip an unloaded client sees.
    var unloadedRoundTripP50Micros: UInt64
    /// One connection, one PING at a time: transport and protocol cost with no query at all.
    var pingRoundTripP50Micros: UInt64
    /// Unloaded round trip minus in-process time (p50 vs p50): what the protocol, the sockets and both sides'
    /// event loops add to a query. Two medians of two separate runs: on a loaded machine their difference is noisy.
    var protocolOverheadMicros: Int64
    /// The same, paired: each query runs in-process and then over the wire, one right after the other, and the
    /// figure is the median of the per-query differences (round trip minus in-process), so query cost and machine
    /// load cancel out query by query.
    var pairedOverheadMicros: Double
    /// The operating system's part of that overhead on this machine: two plain threads passing one byte back and
    /// forth over a Unix socket pair, each busy for the in-process p50 before it sends (as in the paired
    /// measurement), median of round trip minus the answering side's busy time. Each side has gone idle by
    /// the time the other sends, so this is two thread wake-ups and nothing else: no TCP, no NIO, no codec.
    var wakeUpFloorMicros: Double
    /// CPU cost of the protocol itself per query, both sides: encode the request, frame and decode it, encode the
    /// answer, frame and decode it (p50 over the mix, in-process, no sockets).
    var codecP50Micros: Double
    /// Process CPU time per query (both sides: client, server, the bench's tasks) during the maximum-load run,
    /// and the query core's own CPU time per query in-process. CPU time, unlike wall time, is not inflated by
    /// other processes competing for the cores, so their difference is the protocol's cost even on a loaded
    /// machine.
    var loadedCPUMicrosPerQuery: Double
    var inProcessCPUMicrosPerQuery: Double
    var errors: Int

    var description: String {
        """
        server bench: \(listings) listings, \(connections) connections x depth \(pipelineDepth)
          max load:   \(Int(maximumThroughput)) q/s, p50 \(maximumLoadP50Micros) µs, p99 \(maximumLoadP99Micros) µs
          half load:  target \(Int(halfLoadTargetRate)) q/s, achieved \(Int(halfLoadAchievedRate)) q/s, \
        p50 \(halfLoadP50Micros) µs, p99 \(halfLoadP99Micros) µs
        \(lighterLoads.map { "  lighter:    \(Int($0.rate)) q/s, p50 \($0.p50Micros) µs, p99 \($0.p99Micros) µs\n" }
            .joined())\
          in-process: p50 \(inProcessP50Micros) µs, mean \(String(format: "%.1f", inProcessMeanMicros)) µs
          unloaded round trip p50 \(unloadedRoundTripP50Micros) µs -> protocol overhead \(protocolOverheadMicros) µs/query
          paired (same query in-process, then over the wire) overhead p50 \(String(format: "%.1f", pairedOverheadMicros)) µs/query
          of which the OS alone (two threads waking each other over a socket pair, same busy gaps): \
        \(String(format: "%.1f", wakeUpFloorMicros)) µs
          ping round trip p50 \(pingRoundTripP50Micros) µs
          codec (request + answer, both sides) p50 \(String(format: "%.1f", codecP50Micros)) µs/query
          CPU per query: over loopback \(String(format: "%.1f", loadedCPUMicrosPerQuery)) µs (client + server), \
        in-process \(String(format: "%.1f", inProcessCPUMicrosPerQuery)) µs -> protocol CPU \
        \(String(format: "%.1f", loadedCPUMicrosPerQuery - inProcessCPUMicrosPerQuery)) µs/query
          errors: \(errors)
        """
    }
}

/// Open-loop latency at one offered rate.
struct LoadPoint: Sendable, Codable {
    var rate: Double
    var p50Micros: UInt64
    var p99Micros: UInt64
}

/// Drives an ``ExploreServer`` on loopback with the Swift client.
enum ServerBenchmark {
    /// Starts a server on 127.0.0.1 port 0 over `index`, measures in-process cost, unloaded round trip, maximum
    /// throughput (closed loop) and latency at half that load (open loop), then shuts everything down.
    /// - Parameters:
    ///   - index: the engine to serve.
    ///   - queries: the query mix, used round-robin.
    ///   - connections: client connections.
    ///   - pipelineDepth: requests in flight per connection.
    ///   - duration: length of each loaded phase.
    static func run(index: ExploreIndex, queries: [SearchQuery], connections: Int = 8, pipelineDepth: Int = 16,
                    duration: Duration = .seconds(5)) async throws -> ServerBenchmarkReport {
        precondition(!queries.isEmpty && connections > 0 && pipelineDepth > 0)
        let inProcessCPUStart = processCPUMicros()
        let inProcess = measureInProcess(index: index, queries: queries)
        let inProcessCPU = (processCPUMicros() - inProcessCPUStart) / Double(inProcess.count)
        let codec = measureCodec(index: index, queries: queries)
        let server = try await ExploreServer.start(
            configuration: ExploreServerConfiguration(host: "127.0.0.1", port: 0,
                                                      maximumInFlight: max(128, pipelineDepth * 2)),
            backend: index)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            var clients: [ExploreClient] = []
            for _ in 0..<connections {
                clients.append(try await ExploreClient.connect(host: "127.0.0.1", port: server.port, group: clientGroup))
            }
            // Every task driving a connection prefers that connection's event loop as its executor (see
            // `ExploreClient.executor`): the request loop and the connection share a thread, as in a NIO server
            // calling this service. On this 2-core machine that took 10-20 µs off each round trip.
            var ping = Phase()
            try await withTaskExecutorPreference(clients[0].executor) {
                for _ in 0..<2_000 {
                    let sent = ContinuousClock.now
                    try await clients[0].ping()
                    _ = ping.histogram.record(micros(ContinuousClock.now - sent))
                }
            }
            let unloaded = try await closedLoop(clients: [clients[0]], depth: 1, queries: queries,
                                                duration: .milliseconds(500))
            let paired = try await withTaskExecutorPreference(clients[0].executor) {
                try await pairedOverhead(index: index, client: clients[0], queries: queries)
            }
            _ = try await closedLoop(clients: clients, depth: pipelineDepth, queries: queries,
                                     duration: .milliseconds(500))
            let loadedCPUStart = processCPUMicros()
            let maximum = try await closedLoop(clients: clients, depth: pipelineDepth, queries: queries,
                                               duration: duration)
            let loadedCPU = (processCPUMicros() - loadedCPUStart) / Double(max(maximum.count, 1))
            let target = maximum.rate / 2
            let half = try await openLoop(clients: clients, loop: clientGroup.next(), depth: pipelineDepth,
                                          rate: target, queries: queries, duration: duration)
            var lighter: [LoadPoint] = []
            var lighterErrors = 0
            for rate in curveRates where rate < target {
                let phase = try await openLoop(clients: clients, loop: clientGroup.next(), depth: pipelineDepth,
                                               rate: rate, queries: queries, duration: min(duration, .seconds(3)))
                lighterErrors += phase.errors
                lighter.append(LoadPoint(rate: rate, p50Micros: phase.histogram.valueAtPercentile(50),
                                         p99Micros: phase.histogram.valueAtPercentile(99)))
            }
            for client in clients { await client.close() }
            await server.shutdown()
            try await clientGroup.shutdownGracefully()
            let unloadedP50 = unloaded.histogram.valueAtPercentile(50)
            return ServerBenchmarkReport(
                listings: index.count, connections: connections, pipelineDepth: pipelineDepth,
                maximumThroughput: maximum.rate, maximumLoadP50Micros: maximum.histogram.valueAtPercentile(50),
                maximumLoadP99Micros: maximum.histogram.valueAtPercentile(99), halfLoadTargetRate: target,
                halfLoadAchievedRate: half.rate, halfLoadP50Micros: half.histogram.valueAtPercentile(50),
                halfLoadP99Micros: half.histogram.valueAtPercentile(99), lighterLoads: lighter,
                inProcessP50Micros: inProcess.histogram.valueAtPercentile(50), inProcessMeanMicros: inProcess.mean,
                unloadedRoundTripP50Micros: unloadedP50, pingRoundTripP50Micros: ping.histogram.valueAtPercentile(50),
                protocolOverheadMicros: Int64(unloadedP50) - Int64(inProcess.histogram.valueAtPercentile(50)),
                pairedOverheadMicros: paired,
                wakeUpFloorMicros: wakeUpFloor(busyMicros: Double(inProcess.histogram.valueAtPercentile(50))),
                codecP50Micros: codec, loadedCPUMicrosPerQuery: loadedCPU, inProcessCPUMicrosPerQuery: inProcessCPU,
                errors: unloaded.errors + maximum.errors + half.errors + lighterErrors)
        } catch {
            await server.shutdown()
            try? await clientGroup.shutdownGracefully()
            throw error
        }
    }

    /// Offered rates of the lighter open-loop runs (those below half the maximum), queries/s.
    static let curveRates: [Double] = [1_000, 5_000]

    struct Phase {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var count = 0
        var errors = 0
        var rate = 0.0
        var mean = 0.0
    }

    /// Each query once per pass, for at least a few thousand runs, in microseconds.
    static func measureInProcess(index: ExploreIndex, queries: [SearchQuery]) -> Phase {
        var phase = Phase()
        let runs = max(queries.count, 5_000)
        var totalNanos: UInt64 = 0
        for run in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try? index.search(queries[run % queries.count])
            let nanos = DispatchTime.now().uptimeNanoseconds - start
            totalNanos += nanos
            _ = phase.histogram.record(max(nanos / 1_000, 1))
        }
        phase.count = runs
        phase.mean = Double(totalNanos) / Double(runs) / 1_000
        return phase
    }

    /// The protocol's own CPU cost per query, in microseconds (p50): the work both peers do on a query's bytes,
    /// measured without sockets or event loops so it is not hidden by loopback noise.
    static func measureCodec(index: ExploreIndex, queries: [SearchQuery]) -> Double {
        let answers = queries.prefix(1_000).compactMap { query in
            (try? index.search(query)).map { (query, $0) }
        }
        guard !answers.isEmpty else { return 0 }
        var samples: [Double] = []
        var buffer = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        var decoder = FrameDecoder()
        for round in 0..<max(5_000, answers.count) {
            let (query, result) = answers[round % answers.count]
            let start = DispatchTime.now().uptimeNanoseconds
            buffer.clear()
            WireCodec.encode(.search(query), requestID: UInt32(round), into: &buffer)
            guard var body = try? decoder.decode(buffer: &buffer),
                  let header = try? WireCodec.decodeHeader(&body),
                  (try? WireCodec.decodeRequest(header, &body)) != nil else { return .nan }
            buffer.clear()
            WireCodec.encode(.searchResult(result), requestID: UInt32(round), into: &buffer)
            guard var answer = try? decoder.decode(buffer: &buffer),
                  let answerHeader = try? WireCodec.decodeHeader(&answer),
                  (try? WireCodec.decodeResponse(answerHeader, &answer)) != nil else { return .nan }
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1_000)
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    /// Median over queries of (round trip − in-process time) for the same query run in-process just before, in
    /// microseconds.
    static func pairedOverhead(index: ExploreIndex, client: ExploreClient, queries: [SearchQuery],
                               pairs: Int = 1_000) async throws -> Double {
        var differences: [Double] = []
        differences.reserveCapacity(pairs)
        for pair in 0..<pairs {
            let query = queries[(pair * 7919) % queries.count]
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try? index.search(query)
            let local = DispatchTime.now().uptimeNanoseconds
            _ = try await client.search(query)
            let remote = DispatchTime.now().uptimeNanoseconds
            differences.append((Double(remote - local) - Double(local - start)) / 1_000)
        }
        differences.sort()
        return differences[differences.count / 2]
    }

    /// See ``ServerBenchmarkReport/wakeUpFloorMicros``, in microseconds.
    static func wakeUpFloor(busyMicros: Double, rounds: Int = 2_000) -> Double {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return .nan }
        defer { close(pair[0]) }
        let busyNanos = UInt64(busyMicros * 1_000)
        @Sendable func busy() {
            let end = monotonicNanoseconds() + busyNanos
            while monotonicNanoseconds() < end {}
        }
        let answering = pair[1]
        DetachedThread {
            var byte: UInt8 = 0
            while read(answering, &byte, 1) == 1 {
                busy()
                _ = write(answering, &byte, 1)
            }
            close(answering)
        }.start()
        var samples: [Double] = []
        samples.reserveCapacity(rounds)
        var byte: UInt8 = 1
        for _ in 0..<rounds {
            busy()
            let sent = monotonicNanoseconds()
            guard write(pair[0], &byte, 1) == 1, read(pair[0], &byte, 1) == 1 else { break }
            samples.append(Double(monotonicNanoseconds() - sent - busyNanos) / 1_000)
        }
        shutdown(pair[0], Int32(SHUT_WR))
        samples.sort()
        return samples.isEmpty ? .nan : samples[samples.count / 2]
    }

    /// Every worker sends its next query as soon as its previous answer arrives.
    static func closedLoop(clients: [ExploreClient], depth: Int, queries: [SearchQuery],
                           duration: Duration) async throws -> Phase {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + duration
        var phase = try await withThrowingTaskGroup(of: Phase.self) { group in
            for (clientIndex, client) in clients.enumerated() {
                for slot in 0..<depth {
                    group.addTask(executorPreference: client.executor) {
                        var local = Phase()
                        var next = (clientIndex * depth + slot) * 7919
                        while clock.now < deadline {
                            let sent = clock.now
                            do {
                                _ = try await client.search(queries[next % queries.count])
                            } catch {
                                local.errors += 1
                            }
                            _ = local.histogram.record(micros(clock.now - sent))
                            local.count += 1
                            next += 1
                        }
                        return local
                    }
                }
            }
            return try await merge(group)
        }
        phase.rate = Double(phase.count) / seconds(clock.now - start)
        return phase
    }

    /// Requests go out on a fixed schedule at `rate` overall, spread over all workers; latency counts from the
    /// scheduled send time. Workers wait for their send times with timers of `loop`, the clients' event loop,
    /// which their tasks run on: `Task.sleep` wakes through the concurrency runtime's timer thread and hops back
    /// to the loop, and on this 2-core machine those wake-ups came milliseconds late under load: delays of the
    /// load generator that the open loop then charged to the server.
    static func openLoop(clients: [ExploreClient], loop: any EventLoop, depth: Int, rate: Double,
                         queries: [SearchQuery], duration: Duration) async throws -> Phase {
        let clock = ContinuousClock()
        let start = clock.now
        let workers = clients.count * depth
        let interval = Duration.nanoseconds(Int64(1e9 * Double(workers) / max(rate, 1)))
        let total = Int(rate * seconds(duration))
        var phase = try await withThrowingTaskGroup(of: Phase.self) { group in
            for (clientIndex, client) in clients.enumerated() {
                for slot in 0..<depth {
                    let worker = clientIndex * depth + slot
                    group.addTask(executorPreference: client.executor) {
                        var local = Phase()
                        var sequence = 0
                        while sequence * workers + worker < total {
                            let scheduled = start + interval * sequence
                                + .nanoseconds(Int64(1e9 * Double(worker) / max(rate, 1)))
                            let wait = clock.now.duration(to: scheduled)
                            if wait > .zero {
                                let nanoseconds = wait.components.seconds * 1_000_000_000
                                    + wait.components.attoseconds / 1_000_000_000
                                try await loop.scheduleTask(in: .nanoseconds(nanoseconds)) {}.futureResult.get()
                            }
                            do {
                                _ = try await client.search(queries[(sequence * workers + worker) % queries.count])
                            } catch {
                                local.errors += 1
                            }
                            _ = local.histogram.record(micros(clock.now - scheduled))
                            local.count += 1
                            sequence += 1
                        }
                        return local
                    }
                }
            }
            return try await merge(group)
        }
        phase.rate = Double(phase.count) / seconds(clock.now - start)
        return phase
    }

    /// CPU time used by the whole process so far, in microseconds.
    static func processCPUMicros() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Double(time.tv_sec) * 1e6 + Double(time.tv_nsec) / 1e3
    }

    static func merge(_ group: ThrowingTaskGroup<Phase, any Error>) async throws -> Phase {
        var merged = Phase()
        for try await local in group {
            merged.histogram.add(local.histogram)
            merged.count += local.count
            merged.errors += local.errors
        }
        return merged
    }

    static func micros(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(1, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
