import Foundation
import Kafka
import Testing

/// The `kafka-mock` executable next to the test bundle, when the build produced it.
private let kafkaMockExecutable: URL? = {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [directory, directory.deletingLastPathComponent()].map { $0.appendingPathComponent("kafka-mock") }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
}()

@Suite("kafka-mock executable", .serialized, .timeLimit(.minutes(1)),
       .enabled(if: kafkaMockExecutable != nil, "kafka-mock is built by swift build"))
struct KafkaMockExecutableTests {
    @Test func printsBootstrapServersServesTopicsAndStopsOnSIGTERM() async throws {
        guard let executable = kafkaMockExecutable else {
            Issue.record("kafka-mock executable not found")
            return
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = ["--brokers", "2", "--topic", "exec-topic:3", "--duration", "60"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let reader = output.fileHandleForReading
        // Reading the pipe blocks, so it runs on a dispatch queue rather than the cooperative pool.
        let line: String = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var bytes: [UInt8] = []
                while let chunk = try? reader.read(upToCount: 1), let byte = chunk.first, byte != 0x0A {
                    bytes.append(byte)
                }
                continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
            }
        }
        let servers = line.split(separator: ",")
        #expect(servers.count == 2)
        #expect(servers.allSatisfy { $0.hasPrefix("127.0.0.1:") })

        var producerSettings = KafkaConfiguration()
        producerSettings.bootstrapServers = line
        let producer = try KafkaProducer(configuration: producerSettings)
        let report = try await producer.send(
            KafkaProducerRecord(topic: "exec-topic", partition: 2, key: Array("k".utf8), value: Array("v".utf8)))
        #expect(report.partition == 2 && report.offset == 0)

        var consumerSettings = KafkaConfiguration()
        consumerSettings.bootstrapServers = line
        let consumer = try KafkaConsumer(configuration: consumerSettings)
        try consumer.assign([KafkaTopicPartitionOffset(topic: "exec-topic", partition: 2, offset: .beginning)])
        var iterator = consumer.messages.makeAsyncIterator()
        let message = try #require(try await iterator.next())
        #expect(message.key == Array("k".utf8) && message.value == Array("v".utf8))
        try await consumer.close()
        try await producer.close()

        process.terminate()
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                process.waitUntilExit()
                continuation.resume()
            }
        }
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
    }
}
