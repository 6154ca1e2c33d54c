// swift-tools-version: 6.0
import PackageDescription

/// The processor release builds target on x86-64: Nehalem's instruction set, the x86-64-v2 level (SSE4.2 and
/// POPCNT, every x86-64 server processor since 2009). Why: the query core counts bits for every total and facet,
/// and the baseline x86-64 level has no POPCNT, so each count compiled to a dozen shifts and masks (a large
/// city's search with an area facet took 152 µs instead of 138). `EXPLORE_TARGET_CPU` picks another processor
/// (`x86-64` for older ones).
#if arch(x86_64)
let targetCPU: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", Context.environment["EXPLORE_TARGET_CPU"] ?? "nehalem"],
                 .when(configuration: .release)),
]
#else
let targetCPU: [SwiftSetting] = []
#endif

/// One set of compiler settings for every target, so the whole graph builds in the same language mode.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
] + targetCPU

let package = Package(
    name: "explore-projection",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "explore-projector", targets: ["explore-projector"]),
        .executable(name: "bench", targets: ["bench"]),
        .executable(name: "kafka-mock", targets: ["kafka-mock"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // MARK: C modules: a modulemap and a shim header each, nothing else.
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        // Debian's rdkafka.pc has empty cflags; the modulemap links the library and the shim includes
        // <librdkafka/...> directly.
        .systemLibrary(name: "CRdKafka", path: "Sources/CRdKafka",
                       providers: [.apt(["librdkafka-dev"])]),

        // MARK: Wrappers: the only modules that import the C modules.
        .target(name: "Postgres", dependencies: ["CLibPQ"], swiftSettings: swiftSettings),

        .target(name: "Kafka", dependencies: ["CRdKafka"], swiftSettings: swiftSettings),

        // MARK: Pure Swift, no I/O.
        .target(name: "ExploreQuery", swiftSettings: swiftSettings),
        .target(name: "DemoData", dependencies: ["ExploreQuery"], swiftSettings: swiftSettings),
        .target(name: "ChangeEvents", swiftSettings: swiftSettings),

        // MARK: Binary protocol: the codec knows the query language, nothing of PostgreSQL or sockets.
        .target(name: "ExploreWire", dependencies: [
            "ExploreQuery",
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: swiftSettings),
        .target(name: "ExploreServer", dependencies: [
            "ExploreWire", "ExploreQuery",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ], swiftSettings: swiftSettings),
        .target(name: "ExploreClient", dependencies: [
            "ExploreWire", "ExploreQuery",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], swiftSettings: swiftSettings),

        // MARK: Schema management over the Postgres wrapper.
        .target(name: "Migrations", dependencies: [
            "Postgres", "DemoData",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        // MARK: The projector: keeps the read model materialized in PostgreSQL and in the cache.
        .target(name: "Projector", dependencies: [
            "Postgres", "ExploreQuery",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        // MARK: The Kafka feed of the projector: change events through librdkafka, offsets with the projection.
        .target(name: "KafkaFeed", dependencies: [
            "Kafka", "ChangeEvents", "Projector", "Postgres", "ExploreQuery",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        // MARK: The service: the projector feeding the cache, and the server answering from it.
        .target(name: "ExploreService", dependencies: [
            "Projector", "KafkaFeed", "Postgres", "ExploreQuery", "ExploreWire", "ExploreServer",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        // MARK: Operations: Prometheus text, health and readiness on a separate HTTP port.
        .target(name: "ExploreMetrics", dependencies: [
            "Projector",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: swiftSettings),

        // MARK: Executables.
        .executableTarget(name: "explore-projector", dependencies: [
            "Postgres", "Migrations", "Projector", "ExploreQuery", "DemoData", "ExploreServer", "ExploreClient",
            "ExploreService", "ExploreMetrics", "KafkaFeed",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "bench", dependencies: [
            "ExploreQuery", "DemoData", "CSQLite", "ExploreWire", "ExploreServer", "ExploreClient",
            "Kafka", "KafkaFeed", "ChangeEvents", "Postgres", "Projector", "Migrations",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "bench", swiftSettings: swiftSettings),
        .executableTarget(name: "kafka-mock", dependencies: [
            "Kafka",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),

        // MARK: Tests.
        .target(name: "TestSupport", dependencies: ["Postgres"], path: "Tests/TestSupport",
                swiftSettings: swiftSettings),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport", "DemoData"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "MigrationsTests", dependencies: ["Migrations", "Postgres", "DemoData", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ProjectorTests", dependencies: ["Projector", "Migrations", "Postgres", "ExploreQuery",
                    "TestSupport", "ExploreService", "ExploreClient", "DemoData"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ExploreQueryTests", dependencies: ["ExploreQuery", "DemoData"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "DemoDataTests", dependencies: ["DemoData", "ExploreQuery"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ExploreWireTests", dependencies: ["ExploreWire", "ExploreQuery", "DemoData",
                    .product(name: "NIOCore", package: "swift-nio")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ExploreServerTests", dependencies: ["ExploreServer", "ExploreClient", "ExploreWire",
                    "ExploreQuery", "DemoData",
                    .product(name: "NIOCore", package: "swift-nio"),
                    .product(name: "NIOPosix", package: "swift-nio")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ExploreMetricsTests", dependencies: ["ExploreMetrics", "Projector", "ExploreServer",
                    "ExploreClient", "ExploreQuery", "DemoData",
                    .product(name: "Metrics", package: "swift-metrics"),
                    .product(name: "NIOCore", package: "swift-nio"),
                    .product(name: "NIOPosix", package: "swift-nio")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "DemoData"], swiftSettings: swiftSettings),
        .testTarget(name: "KafkaFeedTests", dependencies: ["KafkaFeed", "Kafka", "ChangeEvents", "Projector",
                    "Migrations", "Postgres", "ExploreQuery", "ExploreService", "ExploreClient", "TestSupport",
                    "DemoData"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "ChangeEventsTests", dependencies: ["ChangeEvents", "DemoData"],
                    swiftSettings: swiftSettings),
    ]
)

