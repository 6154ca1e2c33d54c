import Foundation
import Kafka
import Postgres
import Projector
import TestSupport
import Testing

/// The `explore-projector` executable next to the test bundle, when the build produced it.
private let projectorExecutable = BuiltExecutable.path("explore-projector").map(URL.init(fileURLWithPath:))

/// `explore-projector serve --feed kafka` killed with SIGKILL mid-stream and started again.
@Suite("Kafka feed: SIGKILL and restart", .serialized, .timeLimit(.minutes(10)),
       .enabled(if: projectorExecutable != nil, "explore-projector is built by swift build"))
struct KafkaFeedKillTests {
    /// Starts `serve --feed kafka` on an ephemeral port; its output goes to a log file.
    func startServe(_ executable: URL, database: PostgresConfiguration, brokers: String, log: URL) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "serve", "--database-url", database.url, "--listen", "127.0.0.1:0", "--feed", "kafka",
            "--kafka-brokers", brokers, "--kafka-topic", "killed", "--kafka-group", "kill-test",
            "--kafka-property", "fetch.wait.max.ms=10", "--kafka-property", "log_level=2",
            "--batch-window-ms", "2", "--batch-max-ids", "100",
        ]
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Bad combinations of feed options are refused before anything starts, naming the option.
    @Test func serveRefusesBadKafkaOptionCombinations() throws {
        guard let executable = projectorExecutable else {
            Issue.record("explore-projector not found")
            return
        }
        func stderr(_ arguments: [String]) throws -> (Int32, String) {
            let process = Process()
            process.executableURL = executable
            process.arguments = ["serve", "--database-url", "postgres://nobody@127.0.0.1:1/none"] + arguments
            let err = Pipe()
            process.standardError = err
            process.standardOutput = Pipe()
            try process.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }
        let cases: [([String], String)] = [
            (["--kafka-topic", "t"], "--feed kafka"),
            (["--feed", "kafka", "--kafka-topic", "t"], "--kafka-brokers"),
            (["--feed", "kafka", "--kafka-brokers", "127.0.0.1:9092"], "--kafka-topic"),
            (["--feed", "kafka", "--kafka-brokers", "b:1", "--kafka-topic", "bad topic"], "topic"),
            (["--feed", "kafka", "--kafka-brokers", "b:1", "--kafka-topic", "t", "--kafka-dead-letter-topic", "t"],
             "dead-letter"),
            (["--feed", "kafka", "--kafka-brokers", "b:1", "--kafka-topic", "t", "--kafka-property", "novalue"],
             "key=value"),
            (["--feed", "kafka", "--kafka-brokers", "b:1", "--kafka-topic", "t", "--kafka-property", "group.id=x"],
             "group.id"),
            (["--feed", "mqtt"], "feed"),
        ]
        for (arguments, mention) in cases {
            let (status, text) = try stderr(arguments)
            #expect(status != 0, "\(arguments)")
            #expect(text.contains(mention), "\(arguments): \(text)")
        }
        let (status, text) = try stderr(["--demo", "10", "--feed", "kafka", "--kafka-brokers", "b:1",
                                         "--kafka-topic", "t"])
        #expect(status != 0)
        #expect(text.contains("--demo"))
    }

    /// Events keep arriving while the service is killed and restarted: once it has caught up, the stored
    /// offsets cover every record, the projection verifies clean, and the checkpoint counted every applicable
    /// event exactly once, so the restart resumed from the stored offsets (neither skipping nor re-counting).
    @Test func killedMidStreamResumesFromTheStoredOffsets() async throws {
        guard let executable = projectorExecutable else {
            Issue.record("explore-projector not found")
            return
        }
        try await TestPostgres.withDatabase { configuration in
            try await blocking { try KafkaFeedFixtures.prepare(configuration, listings: 3_000) }
            let cluster = try KafkaMockCluster(brokers: 1)
            try cluster.createTopic("killed", partitions: 4)
            let brokers = cluster.bootstrapServers
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("kill-\(getpid()).log")
            defer { try? FileManager.default.removeItem(at: log) }

            var serve = try startServe(executable, database: configuration, brokers: brokers, log: log)
            let appliedBefore = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                // The first start builds the projection; wait until it has and follows the topic.
                #expect(eventually {
                    (try? String(contentsOf: log, encoding: .utf8))?.contains("following Kafka") == true
                })
                return try KafkaFeedFixtures.appliedChanges(connection)
            }

            var produced: Int64 = 0
            var applicable = 0
            var killed = false
            for round in 0..<6 {
                let events = try await blocking {
                    let connection = try PostgresConnection.connect(configuration)
                    defer { connection.close() }
                    return try KafkaFeedFixtures.changeBaseTables(
                        connection, count: 2_000, topic: "killed", partitions: 4, seed: 100 + UInt64(round))
                }
                try await KafkaFeedFixtures.produce(events.records, brokers: brokers)
                produced += Int64(events.records.count)
                applicable += events.applicable
                if round == 2 {
                    // Kill once part of what was produced is applied, not all of it.
                    let limit = produced
                    let partway = try await blocking {
                        let connection = try PostgresConnection.connect(configuration)
                        defer { connection.close() }
                        return try eventually(attempts: 30_000) {
                            try KafkaFeedFixtures.storedOffsetSum(connection, topic: "killed") > limit / 2
                        }
                    }
                    #expect(partway)
                    kill(serve.processIdentifier, SIGKILL)
                    serve.waitUntilExit()
                    #expect(serve.terminationReason == .uncaughtSignal)
                    killed = true
                    serve = try startServe(executable, database: configuration, brokers: brokers, log: log)
                }
            }
            #expect(killed)
            let total = produced
            let (caughtUp, report, applied) = try await blocking {
                let connection = try PostgresConnection.connect(configuration)
                defer { connection.close() }
                let caughtUp = try eventually {
                    try KafkaFeedFixtures.storedOffsetSum(connection, topic: "killed") == total
                }
                return (caughtUp, try KafkaFeedFixtures.strictVerify(connection),
                        try KafkaFeedFixtures.appliedChanges(connection))
            }
            serve.terminate()
            serve.waitUntilExit()
            #expect(caughtUp)
            #expect(report.isClean)
            #expect(applied - appliedBefore == Int64(applicable))
        }
    }
}
