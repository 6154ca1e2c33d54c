public import ExploreQuery

/// Protocol constants shared by client and server.
public enum WireProtocol {
    /// The four magic bytes at the start of every `HELLO` and `HELLO_OK` payload: ASCII `EXPL`.
    public static let magic: [UInt8] = [0x45, 0x58, 0x50, 0x4C]
    /// Protocol versions this implementation speaks. Version 2 appends the feed report to `STATS_RESULT`
    /// (``FeedReport``), version 3 the pending count to `VERIFY_RESULT`; a connection gets its version's layouts.
    public static let supportedVersions: ClosedRange<UInt8> = 1...3
    /// The first version whose `STATS_RESULT` carries the feed report.
    public static let feedReportVersion: UInt8 = 2
    /// The first version whose `VERIFY_RESULT` carries ``VerifyReport/pendingCount``.
    public static let verifyPendingVersion: UInt8 = 3
    /// Default maximum frame length (bytes after the length prefix): 1 MiB.
    public static let defaultMaximumFrameSize = 1 << 20
    /// The length prefix: big-endian u32.
    public static let lengthPrefixSize = 4
}

/// The first byte of every frame body.
public struct Opcode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let hello = Opcode(rawValue: 0x01)
    public static let ping = Opcode(rawValue: 0x02)
    public static let search = Opcode(rawValue: 0x03)
    public static let get = Opcode(rawValue: 0x04)
    public static let stats = Opcode(rawValue: 0x05)
    public static let rebuild = Opcode(rawValue: 0x06)
    public static let verify = Opcode(rawValue: 0x07)

    public static let helloOK = Opcode(rawValue: 0x81)
    public static let pong = Opcode(rawValue: 0x82)
    public static let searchResult = Opcode(rawValue: 0x83)
    public static let rows = Opcode(rawValue: 0x84)
    public static let statsResult = Opcode(rawValue: 0x85)
    public static let rebuildResult = Opcode(rawValue: 0x86)
    public static let verifyResult = Opcode(rawValue: 0x87)
    public static let error = Opcode(rawValue: 0xFF)

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// The header that follows the length prefix: opcode u8, flags u8, request id varint (u32).
public struct FrameHeader: Sendable, Hashable {
    public var opcode: Opcode
    /// Reserved; must be 0 in protocol versions 1 and 2.
    public var flags: UInt8
    /// Chosen by the client, echoed by the server's answer; 0 is used by the server for connection-level errors.
    public var requestID: UInt32

    public init(opcode: Opcode, flags: UInt8 = 0, requestID: UInt32) {
        self.opcode = opcode
        self.flags = flags
        self.requestID = requestID
    }
}

/// The client's opening message.
public struct Hello: Sendable, Hashable {
    public var minimumVersion: UInt8
    public var maximumVersion: UInt8
    /// Admin token; empty for none.
    public var adminToken: [UInt8]

    public init(minimumVersion: UInt8 = WireProtocol.supportedVersions.lowerBound,
                maximumVersion: UInt8 = WireProtocol.supportedVersions.upperBound, adminToken: [UInt8] = []) {
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.adminToken = adminToken
    }
}

/// What a server enables: the filters and listing types a client may use.
public struct FeatureFlags: Sendable, Hashable {
    /// Bit `FilterField.rawValue` set = the filter is enabled.
    public var enabledFilters: Set<FilterField>
    /// Listing types served.
    public var enabledListingTypes: Set<ListingType>

    public init(enabledFilters: Set<FilterField> = Set(FilterField.allCases),
                enabledListingTypes: Set<ListingType> = Set(ListingType.allCases)) {
        self.enabledFilters = enabledFilters
        self.enabledListingTypes = enabledListingTypes
    }

    /// Everything enabled.
    public static let all = FeatureFlags()
}

/// The server's answer to an accepted `HELLO`.
public struct HelloAccepted: Sendable, Hashable {
    public var version: UInt8
    public var features: FeatureFlags
    /// Whether the admin token was accepted (admin operations allowed on this connection).
    public var adminGranted: Bool
    public var maximumFrameSize: UInt32
    public var maximumInFlight: UInt32
    public var serverVersion: String

    public init(version: UInt8, features: FeatureFlags, adminGranted: Bool, maximumFrameSize: UInt32,
                maximumInFlight: UInt32, serverVersion: String) {
        self.version = version
        self.features = features
        self.adminGranted = adminGranted
        self.maximumFrameSize = maximumFrameSize
        self.maximumInFlight = maximumInFlight
        self.serverVersion = serverVersion
    }
}

/// The answer to `STATS`.
public struct ServerStatistics: Sendable, Hashable {
    public var listingCount: UInt64
    public var memoryBytes: UInt64
    /// How far the served state trails the change feed, in microseconds; `nil` when there is no feed.
    public var feedLagMicroseconds: UInt64?
    /// Position of the last change applied; `nil` when there is no feed.
    public var lastAppliedChange: UInt64?
    public var uptimeMicroseconds: UInt64
    public var openConnections: UInt64
    public var protocolVersion: UInt8
    public var features: FeatureFlags
    public var serverVersion: String
    /// The change feed's state; `nil` when there is no feed. Travels only on connections of protocol version
    /// ``WireProtocol/feedReportVersion`` or later: the encoder leaves it out of a version 1 answer.
    public var feed: FeedReport?

    public init(listingCount: UInt64, memoryBytes: UInt64, feedLagMicroseconds: UInt64?, lastAppliedChange: UInt64?,
                uptimeMicroseconds: UInt64, openConnections: UInt64, protocolVersion: UInt8,
                features: FeatureFlags, serverVersion: String, feed: FeedReport? = nil) {
        self.listingCount = listingCount
        self.memoryBytes = memoryBytes
        self.feedLagMicroseconds = feedLagMicroseconds
        self.lastAppliedChange = lastAppliedChange
        self.uptimeMicroseconds = uptimeMicroseconds
        self.openConnections = openConnections
        self.protocolVersion = protocolVersion
        self.features = features
        self.serverVersion = serverVersion
        self.feed = feed
    }
}

/// The change feed's state in `STATS` (protocol version 2): what an operator needs to tell a healthy feed from a
/// stuck one. The lag itself and the last applied change travel in ``ServerStatistics``.
public struct FeedReport: Sendable, Hashable {
    /// The feed is connected to its source and following it.
    public var isConnected: Bool
    /// The cache holds the projection (bootstrapped at least once).
    public var isBootstrapped: Bool
    /// Batches committed by the running feed driver.
    public var batches: UInt64
    /// Failures the feed recovered from.
    public var failures: UInt64
    /// Events that could not be applied and were skipped.
    public var rejectedEvents: UInt64
    /// Changes committed at the source but not applied yet; `nil` when unknown.
    public var pendingChanges: UInt64?
    /// The last failure, while the feed has not recovered from it; one line.
    public var lastError: String?
    /// The rebuild in progress, if any.
    public var rebuild: RebuildStatus?

    /// Longest `lastError` an encoder writes, in UTF-8 bytes; longer messages are cut at a character boundary
    /// (line breaks become spaces first).
    public static let maximumErrorLength = 512

    public init(isConnected: Bool, isBootstrapped: Bool, batches: UInt64 = 0, failures: UInt64 = 0,
                rejectedEvents: UInt64 = 0, pendingChanges: UInt64? = nil, lastError: String? = nil,
                rebuild: RebuildStatus? = nil) {
        self.isConnected = isConnected
        self.isBootstrapped = isBootstrapped
        self.batches = batches
        self.failures = failures
        self.rejectedEvents = rejectedEvents
        self.pendingChanges = pendingChanges
        self.lastError = lastError
        self.rebuild = rebuild
    }
}

/// Progress of a full rebuild as `STATS` reports it.
public struct RebuildStatus: Sendable, Hashable {
    /// What the rebuild is doing; the raw values are the wire values.
    public enum Phase: UInt8, Sendable, Hashable, CaseIterable {
        case building = 0
        case catchingUp = 1
        case swapping = 2
        case loadingCache = 3

        /// The phase's name in reports.
        public var name: String {
            switch self {
            case .building: "building"
            case .catchingUp: "catching_up"
            case .swapping: "swapping"
            case .loadingCache: "loading_cache"
            }
        }
    }

    public var phase: Phase
    /// Rows written so far.
    public var rowsDone: UInt64
    /// Rows expected in all; `nil` when unknown.
    public var rowsTotal: UInt64?
    /// Time since the rebuild started.
    public var elapsedMicroseconds: UInt64

    public init(phase: Phase, rowsDone: UInt64, rowsTotal: UInt64?, elapsedMicroseconds: UInt64) {
        self.phase = phase
        self.rowsDone = rowsDone
        self.rowsTotal = rowsTotal
        self.elapsedMicroseconds = elapsedMicroseconds
    }

    /// Rows per second so far; 0 before any time has passed.
    public var rowsPerSecond: Double {
        elapsedMicroseconds > 0 ? Double(rowsDone) / (Double(elapsedMicroseconds) / 1e6) : 0
    }

    /// Estimated seconds left at the rate so far; `nil` without a total or a rate.
    public var etaSeconds: Double? {
        guard let rowsTotal, rowsPerSecond > 0 else { return nil }
        return Double(rowsTotal > rowsDone ? rowsTotal - rowsDone : 0) / rowsPerSecond
    }
}

/// The answer to `REBUILD`.
public struct RebuildReport: Sendable, Hashable {
    public var listingCount: UInt64
    public var durationMicroseconds: UInt64

    public init(listingCount: UInt64, durationMicroseconds: UInt64) {
        self.listingCount = listingCount
        self.durationMicroseconds = durationMicroseconds
    }
}

/// The answer to `VERIFY`.
public struct VerifyReport: Sendable, Hashable {
    /// Listings compared.
    public var checked: UInt64
    /// Listings that differ between the served index and the source (missing, extra or different).
    public var mismatchCount: UInt64
    /// Up to ``maximumSampleCount`` mismatching ids.
    public var sampleMismatchIDs: [ListingID]
    /// Listings that differed while changes were in flight and agreed when checked again (not mismatches); nil
    /// on connections older than ``WireProtocol/verifyPendingVersion``, which do not carry it.
    public var pendingCount: UInt64?

    public static let maximumSampleCount = 100

    public init(checked: UInt64, mismatchCount: UInt64, sampleMismatchIDs: [ListingID], pendingCount: UInt64? = nil) {
        self.checked = checked
        self.mismatchCount = mismatchCount
        self.sampleMismatchIDs = sampleMismatchIDs
        self.pendingCount = pendingCount
    }
}

/// A request frame's message.
public enum WireRequest: Sendable, Hashable {
    case hello(Hello)
    /// Echo request; the payload comes back unchanged.
    case ping([UInt8])
    case search(SearchQuery)
    case get(ids: [ListingID], columns: ColumnSet)
    case stats
    case rebuild
    case verify

    /// The opcode this message travels under.
    public var opcode: Opcode {
        switch self {
        case .hello: .hello
        case .ping: .ping
        case .search: .search
        case .get: .get
        case .stats: .stats
        case .rebuild: .rebuild
        case .verify: .verify
        }
    }
}

/// A response frame's message.
public enum WireResponse: Sendable, Hashable {
    case helloAccepted(HelloAccepted)
    case pong([UInt8])
    case searchResult(SearchResult)
    case rows(columns: ColumnSet, rows: [ExploreListing])
    case stats(ServerStatistics)
    case rebuilt(RebuildReport)
    case verified(VerifyReport)
    case error(WireError)

    /// The opcode this message travels under.
    public var opcode: Opcode {
        switch self {
        case .helloAccepted: .helloOK
        case .pong: .pong
        case .searchResult: .searchResult
        case .rows: .rows
        case .stats: .statsResult
        case .rebuilt: .rebuildResult
        case .verified: .verifyResult
        case .error: .error
        }
    }
}

extension ExploreListing {
    /// This row with the columns outside `columns` reset to fixed placeholders, i.e. what a decoder produces for
    /// a row encoded with `columns`. Comparing projected rows is how round-trips are checked.
    public func projected(onto columns: ColumnSet) -> ExploreListing {
        ExploreListing(
            id: id,
            listingType: columns.contains(.listingType) ? listingType : .development,
            status: columns.contains(.status) ? status : "",
            title: columns.contains(.title) ? title : "",
            locationID: columns.contains(.locationID) ? locationID : 0,
            priceFrom: columns.contains(.priceFrom) ? priceFrom : nil,
            priceTo: columns.contains(.priceTo) ? priceTo : nil,
            bedrooms: columns.contains(.bedrooms) ? bedrooms : nil,
            bathrooms: columns.contains(.bathrooms) ? bathrooms : nil,
            primaryImageURL: columns.contains(.primaryImageURL) ? primaryImageURL : nil,
            city: columns.contains(.city) ? city : "",
            area: columns.contains(.area) ? area : "",
            createdAt: columns.contains(.createdAt) ? createdAt : 0
        )
    }
}
