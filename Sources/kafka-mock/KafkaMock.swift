import ArgumentParser
import Dispatch
import Kafka

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs librdkafka's mock Kafka cluster on loopback for development: producers and consumers (kcat, the
/// projector) connect to the printed bootstrap servers.
@main
struct KafkaMock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka-mock",
        abstract: "Run librdkafka's in-process mock Kafka cluster on 127.0.0.1.",
        discussion: """
            Prints the bootstrap servers as a single line on standard output, then runs until SIGINT or \
            SIGTERM (or --duration). Topics not created up front are auto-created on first use.
            """)

    @Option(help: "Number of brokers (1...64).")
    var brokers: Int = 1

    @Option(
        name: .customLong("topic"),
        help: ArgumentHelp("A topic to create, as NAME or NAME:PARTITIONS (repeatable).", valueName: "name[:partitions]"))
    var topics: [String] = []

    @Option(help: "Stop after this many seconds instead of waiting for a signal.")
    var duration: Double?

    /// A `--topic` value split into name and partition count.
    struct TopicSpecification: Equatable {
        var name: String
        var partitions: Int

        init(parsing text: String) throws(ValidationError) {
            var name = Substring(text)
            var partitions = 1
            if let colon = text.lastIndex(of: ":") {
                name = text[..<colon]
                guard let count = Int(text[text.index(after: colon)...]), count >= 1, count <= 10_000 else {
                    throw ValidationError("--topic \(text): the partition count must be 1...10000")
                }
                partitions = count
            }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }) else {
                throw ValidationError("--topic \(text): a topic name uses letters, digits, '.', '_' and '-'")
            }
            self.name = String(name)
            self.partitions = partitions
        }
    }

    func validate() throws {
        guard (1...64).contains(brokers) else { throw ValidationError("--brokers must be 1...64") }
        if let duration, !(duration > 0 && duration <= 31_536_000) {
            throw ValidationError("--duration must be a positive number of seconds")
        }
        for topic in topics { _ = try TopicSpecification(parsing: topic) }
    }

    func run() throws {
        // Signals are handled by dispatch sources; ignoring them first keeps the default handler from killing
        // the process before the cluster is torn down.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stop = DispatchSemaphore(value: 0)
        let signalQueue = DispatchQueue(label: "kafka-mock.signals")
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }

        let cluster = try KafkaMockCluster(brokers: brokers)
        for topic in topics {
            let specification = try TopicSpecification(parsing: topic)
            try cluster.createTopic(specification.name, partitions: specification.partitions)
        }
        print(cluster.bootstrapServers)
        fflush(nil)  // flushes every output stream, so a script reading the pipe sees the line at once

        if let duration {
            _ = stop.wait(timeout: .now() + .milliseconds(Int(duration * 1000)))
        } else {
            stop.wait()
        }
        for source in sources { source.cancel() }
        withExtendedLifetime(cluster) {}
    }
}
