import ExploreQuery
public import NIOCore

/// Encodes and decodes frames. Encoders write the whole frame (length prefix included); decoders take one frame
/// body (the bytes after the length prefix) and must consume all of it.
///
/// ```
/// +----------------+--------+-------+----------------+-----------------+
/// | length u32 BE  | opcode | flags | request id     | payload         |
/// | (body bytes)   | u8     | u8    | varint (u32)   | opcode-specific |
/// +----------------+--------+-------+----------------+-----------------+
/// ```
public enum WireCodec {
    // MARK: Frames

    /// Writes a complete request frame.
    public static func encode(_ request: WireRequest, requestID: UInt32, into buffer: inout ByteBuffer) {
        let start = beginFrame(FrameHeader(opcode: request.opcode, requestID: requestID), into: &buffer)
        encodePayload(request, into: &buffer)
        endFrame(start: start, in: &buffer)
    }

    /// Writes a complete response frame.
    public static func encode(_ response: WireResponse, requestID: UInt32, into buffer: inout ByteBuffer) {
        let start = beginFrame(FrameHeader(opcode: response.opcode, requestID: requestID), into: &buffer)
        encodePayload(response, into: &buffer)
        endFrame(start: start, in: &buffer)
    }

    private static func beginFrame(_ header: FrameHeader, into buffer: inout ByteBuffer) -> Int {
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(0), endianness: .big)
        buffer.writeInteger(header.opcode.rawValue)
        buffer.writeInteger(header.flags)
        buffer.writeVarint(UInt64(header.requestID))
        return start
    }

    private static func endFrame(start: Int, in buffer: inout ByteBuffer) {
        let length = buffer.writerIndex - start - WireProtocol.lengthPrefixSize
        buffer.setInteger(UInt32(length), at: start, endianness: .big)
    }

    /// Reads the header at the start of a frame body.
    /// - Throws: ``WireError/Code/malformedFrame`` when the body is too short or the request id is not a u32.
    public static func decodeHeader(_ body: inout ByteBuffer) throws(WireError) -> FrameHeader {
        guard let opcode = body.readInteger(as: UInt8.self), let flags = body.readInteger(as: UInt8.self) else {
            throw WireError(.malformedFrame, "frame shorter than its header")
        }
        let requestID = try body.readVarint(as: UInt32.self, "request id")
        return FrameHeader(opcode: Opcode(rawValue: opcode), flags: flags, requestID: requestID)
    }

    /// Decodes a request payload for `header`, consuming all of `body`.
    /// - Throws: ``WireError/Code/unknownOpcode``, ``WireError/Code/invalidFlags`` or
    ///   ``WireError/Code/malformedFrame``.
    public static func decodeRequest(_ header: FrameHeader, _ body: inout ByteBuffer) throws(WireError) -> WireRequest {
        guard header.flags == 0 else { throw WireError(.invalidFlags, "reserved flag bits set") }
        let request: WireRequest
        switch header.opcode {
        case .hello: request = .hello(try decodeHello(&body))
        case .ping: request = .ping(body.readBytes(length: body.readableBytes) ?? [])
        case .search: request = .search(try decodeQuery(&body))
        case .get:
            let columns = ColumnSet(rawValue: try body.readFixed(UInt16.self, "column mask"))
            try checkColumns(columns)
            let count = try body.readCount("id")
            var ids: [ListingID] = []
            ids.reserveCapacity(count)
            for _ in 0..<count { ids.append(try body.readSignedVarint()) }
            request = .get(ids: ids, columns: columns)
        case .stats: request = .stats
        case .rebuild: request = .rebuild
        case .verify: request = .verify
        default: throw WireError(.unknownOpcode, "unknown request opcode \(header.opcode)")
        }
        try expectEnd(body)
        return request
    }

    /// Decodes a response payload for `header`, consuming all of `body`.
    public static func decodeResponse(_ header: FrameHeader, _ body: inout ByteBuffer) throws(WireError) -> WireResponse {
        guard header.flags == 0 else { throw WireError(.invalidFlags, "reserved flag bits set") }
        let response: WireResponse
        switch header.opcode {
        case .helloOK: response = .helloAccepted(try decodeHelloAccepted(&body))
        case .pong: response = .pong(body.readBytes(length: body.readableBytes) ?? [])
        case .searchResult: response = .searchResult(try decodeSearchResult(&body))
        case .rows:
            let columns = ColumnSet(rawValue: try body.readFixed(UInt16.self, "column mask"))
            try checkColumns(columns)
            response = .rows(columns: columns, rows: try decodeRows(columns, &body))
        case .statsResult: response = .stats(try decodeStatistics(&body))
        case .rebuildResult:
            response = .rebuilt(RebuildReport(listingCount: try body.readVarint(),
                                              durationMicroseconds: try body.readVarint()))
        case .verifyResult:
            let checked = try body.readVarint()
            let mismatches = try body.readVarint()
            let count = try body.readCount("mismatch id")
            var ids: [ListingID] = []
            ids.reserveCapacity(count)
            for _ in 0..<count { ids.append(try body.readSignedVarint()) }
            // Version 3 appends the pending count; the frame's length tells whether it is there.
            let pending = body.readableBytes > 0 ? try body.readVarint() : nil
            response = .verified(VerifyReport(checked: checked, mismatchCount: mismatches, sampleMismatchIDs: ids,
                                              pendingCount: pending))
        case .error:
            let code = WireError.Code(rawValue: try body.readFixed(UInt16.self, "error code"))
            response = .error(WireError(code, try body.readWireString()))
        default: throw WireError(.unknownOpcode, "unknown response opcode \(header.opcode)")
        }
        try expectEnd(body)
        return response
    }

    private static func expectEnd(_ body: ByteBuffer) throws(WireError) {
        guard body.readableBytes == 0 else {
            throw WireError(.malformedFrame, "\(body.readableBytes) trailing bytes after the payload")
        }
    }

    private static func checkColumns(_ columns: ColumnSet) throws(WireError) {
        guard ColumnSet.all.isSuperset(of: columns) else {
            throw WireError(.malformedFrame, "unknown column bits")
        }
    }

    // MARK: Payload encoders

    private static func encodePayload(_ request: WireRequest, into buffer: inout ByteBuffer) {
        switch request {
        case .hello(let hello):
            buffer.writeBytes(WireProtocol.magic)
            buffer.writeInteger(hello.minimumVersion)
            buffer.writeInteger(hello.maximumVersion)
            buffer.writeWireBytes(hello.adminToken)
        case .ping(let payload):
            buffer.writeBytes(payload)
        case .search(let query):
            encodeQuery(query, into: &buffer)
        case .get(let ids, let columns):
            buffer.writeInteger(columns.rawValue, endianness: .big)
            buffer.writeVarint(UInt64(ids.count))
            for id in ids { buffer.writeSignedVarint(id) }
        case .stats, .rebuild, .verify:
            break
        }
    }

    private static func encodePayload(_ response: WireResponse, into buffer: inout ByteBuffer) {
        switch response {
        case .helloAccepted(let accepted):
            buffer.writeBytes(WireProtocol.magic)
            buffer.writeInteger(accepted.version)
            encodeFeatures(accepted.features, into: &buffer)
            buffer.writeInteger(accepted.adminGranted ? UInt8(1) : 0)
            buffer.writeInteger(accepted.maximumFrameSize, endianness: .big)
            buffer.writeVarint(UInt64(accepted.maximumInFlight))
            buffer.writeWireString(accepted.serverVersion)
        case .pong(let payload):
            buffer.writeBytes(payload)
        case .searchResult(let result):
            encodeSearchResult(result, into: &buffer)
        case .rows(let columns, let rows):
            buffer.writeInteger(columns.rawValue, endianness: .big)
            encodeRows(rows, columns: columns, into: &buffer)
        case .stats(let stats):
            buffer.writeVarint(stats.listingCount)
            buffer.writeVarint(stats.memoryBytes)
            var presence: UInt8 = 0
            if stats.feedLagMicroseconds != nil { presence |= 1 }
            if stats.lastAppliedChange != nil { presence |= 2 }
            buffer.writeInteger(presence)
            if let lag = stats.feedLagMicroseconds { buffer.writeVarint(lag) }
            if let last = stats.lastAppliedChange { buffer.writeVarint(last) }
            buffer.writeVarint(stats.uptimeMicroseconds)
            buffer.writeVarint(stats.openConnections)
            buffer.writeInteger(stats.protocolVersion)
            encodeFeatures(stats.features, into: &buffer)
            buffer.writeWireString(stats.serverVersion)
            if stats.protocolVersion >= WireProtocol.feedReportVersion {
                encodeFeedReport(stats.feed, into: &buffer)
            }
        case .rebuilt(let report):
            buffer.writeVarint(report.listingCount)
            buffer.writeVarint(report.durationMicroseconds)
        case .verified(let report):
            buffer.writeVarint(report.checked)
            buffer.writeVarint(report.mismatchCount)
            buffer.writeVarint(UInt64(report.sampleMismatchIDs.count))
            for id in report.sampleMismatchIDs { buffer.writeSignedVarint(id) }
            if let pending = report.pendingCount { buffer.writeVarint(pending) }
        case .error(let error):
            buffer.writeInteger(error.code.rawValue, endianness: .big)
            buffer.writeWireString(error.message)
        }
    }

    // MARK: Hello

    private static func decodeHello(_ body: inout ByteBuffer) throws(WireError) -> Hello {
        guard body.readBytes(length: 4) == WireProtocol.magic else {
            throw WireError(.badHandshake, "missing protocol magic")
        }
        let minimum = try body.readFixed(UInt8.self, "minimum version")
        let maximum = try body.readFixed(UInt8.self, "maximum version")
        let token = try body.readWireBytes()
        return Hello(minimumVersion: minimum, maximumVersion: maximum, adminToken: token)
    }

    private static func decodeHelloAccepted(_ body: inout ByteBuffer) throws(WireError) -> HelloAccepted {
        guard body.readBytes(length: 4) == WireProtocol.magic else {
            throw WireError(.badHandshake, "missing protocol magic")
        }
        let version = try body.readFixed(UInt8.self, "version")
        let features = try decodeFeatures(&body)
        let admin = try body.readFixed(UInt8.self, "admin flag")
        guard admin <= 1 else { throw WireError(.malformedFrame, "admin flag must be 0 or 1") }
        let maximumFrameSize = try body.readFixed(UInt32.self, "maximum frame size")
        let maximumInFlight = try body.readVarint(as: UInt32.self, "maximum in-flight")
        let serverVersion = try body.readWireString()
        return HelloAccepted(version: version, features: features, adminGranted: admin == 1,
                             maximumFrameSize: maximumFrameSize, maximumInFlight: maximumInFlight,
                             serverVersion: serverVersion)
    }

    // MARK: Feature flags: enabled-filter mask u16 BE, enabled-listing-type mask u8

    private static func encodeFeatures(_ features: FeatureFlags, into buffer: inout ByteBuffer) {
        var filters: UInt16 = 0
        for field in features.enabledFilters { filters |= 1 << field.rawValue }
        var types: UInt8 = 0
        for type in features.enabledListingTypes { types |= 1 << type.rawValue }
        buffer.writeInteger(filters, endianness: .big)
        buffer.writeInteger(types)
    }

    private static func decodeFeatures(_ body: inout ByteBuffer) throws(WireError) -> FeatureFlags {
        let filters = try body.readFixed(UInt16.self, "filter mask")
        let types = try body.readFixed(UInt8.self, "listing type mask")
        let enabledFilters = Set(FilterField.allCases.filter { filters & (1 << $0.rawValue) != 0 })
        let enabledTypes = Set(ListingType.allCases.filter { types & (1 << $0.rawValue) != 0 })
        guard filters >> FilterField.allCases.count == 0, types >> ListingType.allCases.count == 0 else {
            throw WireError(.malformedFrame, "unknown feature bits")
        }
        return FeatureFlags(enabledFilters: enabledFilters, enabledListingTypes: enabledTypes)
    }

    private static func decodeStatistics(_ body: inout ByteBuffer) throws(WireError) -> ServerStatistics {
        let count = try body.readVarint()
        let memory = try body.readVarint()
        let presence = try body.readFixed(UInt8.self, "presence")
        guard presence & ~3 == 0 else { throw WireError(.malformedFrame, "unknown presence bits") }
        let lag = presence & 1 != 0 ? try body.readVarint() : nil
        let last = presence & 2 != 0 ? try body.readVarint() : nil
        let uptime = try body.readVarint()
        let connections = try body.readVarint()
        let version = try body.readFixed(UInt8.self, "protocol version")
        let features = try decodeFeatures(&body)
        let serverVersion = try body.readWireString()
        let feed = version >= WireProtocol.feedReportVersion ? try decodeFeedReport(&body) : nil
        return ServerStatistics(listingCount: count, memoryBytes: memory, feedLagMicroseconds: lag,
                                lastAppliedChange: last, uptimeMicroseconds: uptime, openConnections: connections,
                                protocolVersion: version, features: features, serverVersion: serverVersion,
                                feed: feed)
    }

    // MARK: Feed report (STATS_RESULT, protocol version 2)

    private enum FeedPresence {
        static let state: UInt8 = 1 << 0
        static let pendingChanges: UInt8 = 1 << 1
        static let lastError: UInt8 = 1 << 2
        static let rebuild: UInt8 = 1 << 3
        static let rebuildTotal: UInt8 = 1 << 4
        static let all: UInt8 = 0x1F
    }

    private static func encodeFeedReport(_ feed: FeedReport?, into buffer: inout ByteBuffer) {
        guard let feed else {
            buffer.writeInteger(UInt8(0))
            return
        }
        let lastError = feed.lastError.map {
            truncated($0.split(whereSeparator: \.isNewline).joined(separator: " "),
                      toUTF8Bytes: FeedReport.maximumErrorLength)
        }
        var presence = FeedPresence.state
        if feed.pendingChanges != nil { presence |= FeedPresence.pendingChanges }
        if lastError != nil { presence |= FeedPresence.lastError }
        if let rebuild = feed.rebuild {
            presence |= FeedPresence.rebuild
            if rebuild.rowsTotal != nil { presence |= FeedPresence.rebuildTotal }
        }
        buffer.writeInteger(presence)
        buffer.writeInteger((feed.isConnected ? UInt8(1) : 0) | (feed.isBootstrapped ? 2 : 0))
        buffer.writeVarint(feed.batches)
        buffer.writeVarint(feed.failures)
        buffer.writeVarint(feed.rejectedEvents)
        if let pending = feed.pendingChanges { buffer.writeVarint(pending) }
        if let lastError { buffer.writeWireString(lastError) }
        if let rebuild = feed.rebuild {
            buffer.writeInteger(rebuild.phase.rawValue)
            buffer.writeVarint(rebuild.rowsDone)
            if let total = rebuild.rowsTotal { buffer.writeVarint(total) }
            buffer.writeVarint(rebuild.elapsedMicroseconds)
        }
    }

    private static func decodeFeedReport(_ body: inout ByteBuffer) throws(WireError) -> FeedReport? {
        let presence = try body.readFixed(UInt8.self, "feed presence")
        guard presence & ~FeedPresence.all == 0 else { throw WireError(.malformedFrame, "unknown feed presence bits") }
        guard presence != 0 else { return nil }
        guard presence & FeedPresence.state != 0,
              presence & FeedPresence.rebuildTotal == 0 || presence & FeedPresence.rebuild != 0 else {
            throw WireError(.malformedFrame, "feed presence bits without the fields they depend on")
        }
        let state = try body.readFixed(UInt8.self, "feed state")
        guard state & ~3 == 0 else { throw WireError(.malformedFrame, "unknown feed state bits") }
        var feed = FeedReport(isConnected: state & 1 != 0, isBootstrapped: state & 2 != 0,
                              batches: try body.readVarint(), failures: try body.readVarint(),
                              rejectedEvents: try body.readVarint())
        if presence & FeedPresence.pendingChanges != 0 { feed.pendingChanges = try body.readVarint() }
        if presence & FeedPresence.lastError != 0 { feed.lastError = try body.readWireString() }
        if presence & FeedPresence.rebuild != 0 {
            let raw = try body.readFixed(UInt8.self, "rebuild phase")
            guard let phase = RebuildStatus.Phase(rawValue: raw) else {
                throw WireError(.malformedFrame, "unknown rebuild phase \(raw)")
            }
            let done = try body.readVarint()
            let total = presence & FeedPresence.rebuildTotal != 0 ? try body.readVarint() : nil
            feed.rebuild = RebuildStatus(phase: phase, rowsDone: done, rowsTotal: total,
                                         elapsedMicroseconds: try body.readVarint())
        }
        return feed
    }

    /// `text` cut to at most `limit` UTF-8 bytes at a character boundary.
    static func truncated(_ text: String, toUTF8Bytes limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var result = ""
        var bytes = 0
        for character in text {
            let size = character.utf8.count
            guard bytes + size <= limit else { break }
            result.append(character)
            bytes += size
        }
        return result
    }

    // MARK: Search query

    /// Filter presence bits, in payload order.
    enum FilterBit {
        static let listingTypes: UInt16 = 1 << 0
        static let statuses: UInt16 = 1 << 1
        static let cities: UInt16 = 1 << 2
        static let areas: UInt16 = 1 << 3
        static let locationIDs: UInt16 = 1 << 4
        static let priceMin: UInt16 = 1 << 5
        static let priceMax: UInt16 = 1 << 6
        static let bedroomsMin: UInt16 = 1 << 7
        static let bedroomsMax: UInt16 = 1 << 8
        static let bathroomsMin: UInt16 = 1 << 9
        static let createdAfter: UInt16 = 1 << 10
        static let createdBefore: UInt16 = 1 << 11
        static let all: UInt16 = (1 << 12) - 1
    }

    /// Query options byte.
    enum QueryOption {
        static let includeTotal: UInt8 = 1 << 0
    }

    /// Writes a query payload:
    /// sort u8, limit svarint, options u8, facet mask u8, column mask u16 BE, page start, filter mask varint, filters.
    static func encodeQuery(_ query: SearchQuery, into buffer: inout ByteBuffer) {
        buffer.writeInteger(query.sort.rawValue)
        buffer.writeSignedVarint(Int64(query.limit))
        buffer.writeInteger(query.includeTotal ? QueryOption.includeTotal : 0)
        var facets: UInt8 = 0
        for facet in query.facets { facets |= 1 << facet.rawValue }
        buffer.writeInteger(facets)
        buffer.writeInteger(query.columns.rawValue, endianness: .big)
        switch query.start {
        case .first:
            buffer.writeInteger(UInt8(0))
        case .offset(let offset):
            buffer.writeInteger(UInt8(1))
            buffer.writeSignedVarint(Int64(offset))
        case .after(let cursor):
            buffer.writeInteger(UInt8(2))
            buffer.writeWireBytes(cursor.bytes)
        }
        let filter = query.filter
        var mask: UInt16 = 0
        if filter.listingTypes != nil { mask |= FilterBit.listingTypes }
        if filter.statuses != nil { mask |= FilterBit.statuses }
        if filter.cities != nil { mask |= FilterBit.cities }
        if filter.areas != nil { mask |= FilterBit.areas }
        if filter.locationIDs != nil { mask |= FilterBit.locationIDs }
        if filter.priceMin != nil { mask |= FilterBit.priceMin }
        if filter.priceMax != nil { mask |= FilterBit.priceMax }
        if filter.bedroomsMin != nil { mask |= FilterBit.bedroomsMin }
        if filter.bedroomsMax != nil { mask |= FilterBit.bedroomsMax }
        if filter.bathroomsMin != nil { mask |= FilterBit.bathroomsMin }
        if filter.createdAfter != nil { mask |= FilterBit.createdAfter }
        if filter.createdBefore != nil { mask |= FilterBit.createdBefore }
        buffer.writeVarint(UInt64(mask))
        if let types = filter.listingTypes {
            var bits: UInt8 = 0
            for type in types { bits |= 1 << type.rawValue }
            buffer.writeInteger(bits)
        }
        // Sets are written sorted so equal queries encode to equal bytes (the golden vectors rely on it).
        if let statuses = filter.statuses { writeStrings(statuses, into: &buffer) }
        if let cities = filter.cities { writeStrings(cities, into: &buffer) }
        if let areas = filter.areas { writeStrings(areas, into: &buffer) }
        if let ids = filter.locationIDs {
            buffer.writeVarint(UInt64(ids.count))
            for id in ids.sorted() { buffer.writeSignedVarint(id) }
        }
        if let value = filter.priceMin { buffer.writeSignedVarint(value) }
        if let value = filter.priceMax { buffer.writeSignedVarint(value) }
        if let value = filter.bedroomsMin { buffer.writeSignedVarint(Int64(value)) }
        if let value = filter.bedroomsMax { buffer.writeSignedVarint(Int64(value)) }
        if let value = filter.bathroomsMin { buffer.writeSignedVarint(Int64(value)) }
        if let value = filter.createdAfter { buffer.writeSignedVarint(value) }
        if let value = filter.createdBefore { buffer.writeSignedVarint(value) }
    }

    private static func writeStrings(_ strings: Set<String>, into buffer: inout ByteBuffer) {
        buffer.writeVarint(UInt64(strings.count))
        for string in strings.sorted() { buffer.writeWireString(string) }
    }

    private static func readStrings(_ body: inout ByteBuffer) throws(WireError) -> Set<String> {
        let count = try body.readCount("string")
        var strings = Set<String>(minimumCapacity: count)
        for _ in 0..<count { strings.insert(try body.readWireString()) }
        guard strings.count == count else { throw WireError(.malformedFrame, "duplicate value in a set") }
        return strings
    }

    static func decodeQuery(_ body: inout ByteBuffer) throws(WireError) -> SearchQuery {
        guard let sort = SortOrder(rawValue: try body.readFixed(UInt8.self, "sort")) else {
            throw WireError(.malformedFrame, "unknown sort order")
        }
        let limit = try body.readSignedVarint(as: Int.self, "limit")
        let options = try body.readFixed(UInt8.self, "options")
        guard options & ~QueryOption.includeTotal == 0 else { throw WireError(.malformedFrame, "unknown option bits") }
        let facetBits = try body.readFixed(UInt8.self, "facet mask")
        guard facetBits >> FacetField.allCases.count == 0 else { throw WireError(.malformedFrame, "unknown facet bits") }
        let facets = Set(FacetField.allCases.filter { facetBits & (1 << $0.rawValue) != 0 })
        let columns = ColumnSet(rawValue: try body.readFixed(UInt16.self, "column mask"))
        try checkColumns(columns)
        let start: PageStart
        switch try body.readFixed(UInt8.self, "page start") {
        case 0: start = .first
        case 1: start = .offset(try body.readSignedVarint(as: Int.self, "offset"))
        case 2: start = .after(SearchCursor(bytes: try body.readWireBytes()))
        default: throw WireError(.malformedFrame, "unknown page start kind")
        }
        let mask = try body.readVarint(as: UInt16.self, "filter mask")
        guard mask & ~FilterBit.all == 0 else { throw WireError(.malformedFrame, "unknown filter bits") }
        var filter = SearchFilter()
        if mask & FilterBit.listingTypes != 0 {
            let bits = try body.readFixed(UInt8.self, "listing types")
            guard bits >> ListingType.allCases.count == 0 else {
                throw WireError(.malformedFrame, "unknown listing type bits")
            }
            filter.listingTypes = Set(ListingType.allCases.filter { bits & (1 << $0.rawValue) != 0 })
        }
        if mask & FilterBit.statuses != 0 { filter.statuses = try readStrings(&body) }
        if mask & FilterBit.cities != 0 { filter.cities = try readStrings(&body) }
        if mask & FilterBit.areas != 0 { filter.areas = try readStrings(&body) }
        if mask & FilterBit.locationIDs != 0 {
            let count = try body.readCount("location id")
            var ids = Set<Int64>(minimumCapacity: count)
            for _ in 0..<count { ids.insert(try body.readSignedVarint()) }
            guard ids.count == count else { throw WireError(.malformedFrame, "duplicate value in a set") }
            filter.locationIDs = ids
        }
        if mask & FilterBit.priceMin != 0 { filter.priceMin = try body.readSignedVarint() }
        if mask & FilterBit.priceMax != 0 { filter.priceMax = try body.readSignedVarint() }
        if mask & FilterBit.bedroomsMin != 0 { filter.bedroomsMin = try body.readSignedVarint(as: Int32.self, "bedrooms") }
        if mask & FilterBit.bedroomsMax != 0 { filter.bedroomsMax = try body.readSignedVarint(as: Int32.self, "bedrooms") }
        if mask & FilterBit.bathroomsMin != 0 {
            filter.bathroomsMin = try body.readSignedVarint(as: Int32.self, "bathrooms")
        }
        if mask & FilterBit.createdAfter != 0 { filter.createdAfter = try body.readSignedVarint() }
        if mask & FilterBit.createdBefore != 0 { filter.createdBefore = try body.readSignedVarint() }
        return SearchQuery(filter: filter, sort: sort, limit: limit, start: start,
                           includeTotal: options & QueryOption.includeTotal != 0, facets: facets, columns: columns)
    }

    // MARK: Search result

    /// Result presence bits.
    enum ResultBit {
        static let total: UInt8 = 1 << 0
        static let nextCursor: UInt8 = 1 << 1
    }

    private static func encodeSearchResult(_ result: SearchResult, into buffer: inout ByteBuffer) {
        var presence: UInt8 = 0
        if result.total != nil { presence |= ResultBit.total }
        if result.nextCursor != nil { presence |= ResultBit.nextCursor }
        buffer.writeInteger(presence)
        if let total = result.total { buffer.writeVarint(UInt64(max(total, 0))) }
        if let cursor = result.nextCursor { buffer.writeWireBytes(cursor.bytes) }
        buffer.writeInteger(result.columns.rawValue, endianness: .big)
        encodeRows(result.rows, columns: result.columns, into: &buffer)
        buffer.writeVarint(UInt64(result.facets.count))
        // A facet can hold hundreds of values (every area of a city): like rows, each facet is written straight
        // into the buffer's memory after one capacity check sized from the values' byte lengths.
        for facet in result.facets {
            var bound = 1 + 10
            for entry in facet.counts {
                bound += 2 * 10
                if case .text(let text) = entry.value { bound += text.utf8.count }
            }
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { memory in
                var writer = RawWriter(memory: memory)
                writer.byte(facet.field.rawValue)
                writer.varint(UInt64(facet.counts.count))
                for entry in facet.counts {
                    switch entry.value {
                    case .text(let text): writer.string(text)
                    case .listingType(let type): writer.byte(type.rawValue)
                    case .bedrooms(let bedrooms): writer.signedVarint(Int64(bedrooms))
                    case .priceBucket(let bucket): writer.varint(UInt64(max(bucket, 0)))
                    }
                    writer.varint(UInt64(max(entry.count, 0)))
                }
                return writer.offset
            }
        }
    }

    private static func decodeSearchResult(_ body: inout ByteBuffer) throws(WireError) -> SearchResult {
        let presence = try body.readFixed(UInt8.self, "presence")
        guard presence & ~(ResultBit.total | ResultBit.nextCursor) == 0 else {
            throw WireError(.malformedFrame, "unknown presence bits")
        }
        let total = presence & ResultBit.total != 0 ? try body.readVarint(as: Int.self, "total") : nil
        let cursor = presence & ResultBit.nextCursor != 0 ? SearchCursor(bytes: try body.readWireBytes()) : nil
        let columns = ColumnSet(rawValue: try body.readFixed(UInt16.self, "column mask"))
        try checkColumns(columns)
        let rows = try decodeRows(columns, &body)
        let facets = try RawReader.read(&body) { reader throws(WireError) in try decodeFacets(&reader) }
        return SearchResult(total: total, rows: rows, columns: columns, nextCursor: cursor, facets: facets)
    }

    /// Facets through a ``RawReader``: hundreds of values per facet, read without a buffer call per field.
    private static func decodeFacets(_ reader: inout RawReader) throws(WireError) -> [FacetCounts] {
        let facetCount = try reader.count(minimumElementSize: 2, "facet")
        var facets: [FacetCounts] = []
        for _ in 0..<facetCount {
            guard let field = FacetField(rawValue: try reader.byte("facet field")) else {
                throw WireError(.malformedFrame, "unknown facet field")
            }
            let entryCount = try reader.count(minimumElementSize: 2, "facet value")
            var counts: [(value: FacetValue, count: Int)] = []
            counts.reserveCapacity(entryCount)
            for _ in 0..<entryCount {
                let value: FacetValue
                switch field {
                case .city, .area: value = .text(try reader.string())
                case .listingType:
                    guard let type = ListingType(rawValue: try reader.byte("listing type")) else {
                        throw WireError(.malformedFrame, "unknown listing type")
                    }
                    value = .listingType(type)
                case .bedrooms: value = .bedrooms(try reader.signedVarint(as: Int32.self, "bedrooms"))
                case .priceBucket: value = .priceBucket(try reader.varint(as: Int.self, "price bucket"))
                }
                counts.append((value, try reader.varint(as: Int.self, "facet count")))
            }
            facets.append(FacetCounts(field: field, counts: counts))
        }
        return facets
    }

    // MARK: Rows

    /// Null bits of a row, present only when the column mask selects a nullable column.
    enum NullBit {
        static let priceFrom: UInt8 = 1 << 0
        static let priceTo: UInt8 = 1 << 1
        static let bedrooms: UInt8 = 1 << 2
        static let bathrooms: UInt8 = 1 << 3
        static let primaryImageURL: UInt8 = 1 << 4
    }

    static let nullableColumns: ColumnSet = [.priceFrom, .priceTo, .bedrooms, .bathrooms, .primaryImageURL]

    private static func nullMask(for columns: ColumnSet) -> UInt8 {
        var mask: UInt8 = 0
        if columns.contains(.priceFrom) { mask |= NullBit.priceFrom }
        if columns.contains(.priceTo) { mask |= NullBit.priceTo }
        if columns.contains(.bedrooms) { mask |= NullBit.bedrooms }
        if columns.contains(.bathrooms) { mask |= NullBit.bathrooms }
        if columns.contains(.primaryImageURL) { mask |= NullBit.primaryImageURL }
        return mask
    }

    /// Writes row count varint, then each row: id svarint, null byte (if any nullable column is selected), then
    /// the selected columns in bit order, nulls omitted.
    static func encodeRows(_ rows: [ExploreListing], columns: ColumnSet, into buffer: inout ByteBuffer) {
        // One up-front reservation instead of repeated growth; ~112 bytes is a typical all-columns row.
        buffer.reserveCapacity(minimumWritableBytes: rows.count * (columns.rawValue.nonzeroBitCount * 9 + 4))
        buffer.writeVarint(UInt64(rows.count))
        let hasNullable = !columns.isDisjoint(with: nullableColumns)
        // Each row is written straight into the buffer's memory with one capacity check, instead of one NIO call
        // (bounds, capacity and exclusivity checks) per field: per-field calls were most of the encoding time.
        // Fields are read in place through the array's storage: copying a whole row retains five strings.
        rows.withUnsafeBufferPointer { rowsPointer in
            guard let first = rowsPointer.baseAddress else { return }
            for index in rowsPointer.indices {
                let row = first + index
                var bound = 8 * 10 + 2
                if columns.contains(.status) { bound += row.pointee.status.utf8.count + 10 }
                if columns.contains(.title) { bound += row.pointee.title.utf8.count + 10 }
                if columns.contains(.primaryImageURL) { bound += (row.pointee.primaryImageURL?.utf8.count ?? 0) + 10 }
                if columns.contains(.city) { bound += row.pointee.city.utf8.count + 10 }
                if columns.contains(.area) { bound += row.pointee.area.utf8.count + 10 }
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { memory in
                    var writer = RawWriter(memory: memory)
                    writer.signedVarint(row.pointee.id)
                    if hasNullable {
                        var nulls: UInt8 = 0
                        if columns.contains(.priceFrom) && row.pointee.priceFrom == nil { nulls |= NullBit.priceFrom }
                        if columns.contains(.priceTo) && row.pointee.priceTo == nil { nulls |= NullBit.priceTo }
                        if columns.contains(.bedrooms) && row.pointee.bedrooms == nil { nulls |= NullBit.bedrooms }
                        if columns.contains(.bathrooms) && row.pointee.bathrooms == nil { nulls |= NullBit.bathrooms }
                        if columns.contains(.primaryImageURL) && row.pointee.primaryImageURL == nil {
                            nulls |= NullBit.primaryImageURL
                        }
                        writer.byte(nulls)
                    }
                    if columns.contains(.listingType) { writer.byte(row.pointee.listingType.rawValue) }
                    if columns.contains(.status) { writer.string(row.pointee.status) }
                    if columns.contains(.title) { writer.string(row.pointee.title) }
                    if columns.contains(.locationID) { writer.signedVarint(row.pointee.locationID) }
                    if columns.contains(.priceFrom), let value = row.pointee.priceFrom { writer.signedVarint(value) }
                    if columns.contains(.priceTo), let value = row.pointee.priceTo { writer.signedVarint(value) }
                    if columns.contains(.bedrooms), let value = row.pointee.bedrooms { writer.signedVarint(Int64(value)) }
                    if columns.contains(.bathrooms), let value = row.pointee.bathrooms {
                        writer.signedVarint(Int64(value))
                    }
                    if columns.contains(.primaryImageURL), let value = row.pointee.primaryImageURL { writer.string(value) }
                    if columns.contains(.city) { writer.string(row.pointee.city) }
                    if columns.contains(.area) { writer.string(row.pointee.area) }
                    if columns.contains(.createdAt) { writer.signedVarint(row.pointee.createdAt) }
                    return writer.offset
                }
            }
        }
    }

    static func decodeRows(_ columns: ColumnSet, _ body: inout ByteBuffer) throws(WireError) -> [ExploreListing] {
        try RawReader.read(&body) { reader throws(WireError) in try decodeRows(columns, &reader) }
    }

    /// Rows through a ``RawReader``: one bounds check per field instead of a buffer call per field.
    private static func decodeRows(_ columns: ColumnSet, _ reader: inout RawReader) throws(WireError) -> [ExploreListing] {
        let count = try reader.count("row")
        let allowedNulls = nullMask(for: columns)
        let hasNullable = allowedNulls != 0
        var rows: [ExploreListing] = []
        rows.reserveCapacity(count)
        for _ in 0..<count {
            var row = ExploreListing(id: try reader.signedVarint(), listingType: .development, status: "",
                                     title: "", locationID: 0, priceFrom: nil, priceTo: nil, bedrooms: nil,
                                     bathrooms: nil, primaryImageURL: nil, city: "", area: "", createdAt: 0)
            let nulls = hasNullable ? try reader.byte("null mask") : 0
            guard nulls & ~allowedNulls == 0 else { throw WireError(.malformedFrame, "null bit for an absent column") }
            if columns.contains(.listingType) {
                guard let type = ListingType(rawValue: try reader.byte("listing type")) else {
                    throw WireError(.malformedFrame, "unknown listing type")
                }
                row.listingType = type
            }
            if columns.contains(.status) { row.status = try reader.string() }
            if columns.contains(.title) { row.title = try reader.string() }
            if columns.contains(.locationID) { row.locationID = try reader.signedVarint() }
            if allowedNulls & NullBit.priceFrom != 0 && nulls & NullBit.priceFrom == 0 {
                row.priceFrom = try reader.signedVarint()
            }
            if allowedNulls & NullBit.priceTo != 0 && nulls & NullBit.priceTo == 0 {
                row.priceTo = try reader.signedVarint()
            }
            if allowedNulls & NullBit.bedrooms != 0 && nulls & NullBit.bedrooms == 0 {
                row.bedrooms = try reader.signedVarint(as: Int32.self, "bedrooms")
            }
            if allowedNulls & NullBit.bathrooms != 0 && nulls & NullBit.bathrooms == 0 {
                row.bathrooms = try reader.signedVarint(as: Int32.self, "bathrooms")
            }
            if allowedNulls & NullBit.primaryImageURL != 0 && nulls & NullBit.primaryImageURL == 0 {
                row.primaryImageURL = try reader.string()
            }
            if columns.contains(.city) { row.city = try reader.string() }
            if columns.contains(.area) { row.area = try reader.string() }
            if columns.contains(.createdAt) { row.createdAt = try reader.signedVarint() }
            rows.append(row)
        }
        return rows
    }
}

/// Reads protocol primitives from a frame body's memory with the same checks and errors as the `ByteBuffer`
/// readers (`ByteBuffer+Wire.swift`), one bounds check per field: used for the parts of an answer that repeat
/// (rows, facet values), where a buffer call per field was most of the decoding time.
struct RawReader {
    private let memory: UnsafeRawBufferPointer
    private(set) var offset = 0

    private init(memory: UnsafeRawBufferPointer) { self.memory = memory }

    /// Runs `body` over `buffer`'s readable bytes and consumes what it read.
    static func read<T>(_ buffer: inout ByteBuffer,
                        _ body: (inout RawReader) throws(WireError) -> T) throws(WireError) -> T {
        let outcome = buffer.withUnsafeReadableBytes { memory -> (Result<T, WireError>, Int) in
            var reader = RawReader(memory: memory)
            do throws(WireError) {
                let value = try body(&reader)
                return (.success(value), reader.offset)
            } catch {
                return (.failure(error), 0)
            }
        }
        let value = try outcome.0.get()
        buffer.moveReaderIndex(forwardBy: outcome.1)
        return value
    }

    private var remaining: Int { memory.count - offset }

    mutating func byte(_ what: StaticString) throws(WireError) -> UInt8 {
        guard offset < memory.count else { throw WireError(.malformedFrame, "truncated \(what)") }
        defer { offset += 1 }
        return memory[offset]
    }

    mutating func varint() throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < memory.count else { throw WireError(.malformedFrame, "truncated varint") }
            let byte = memory[offset]
            offset += 1
            if shift == 63 && byte > 1 {
                throw WireError(.malformedFrame, "varint overflows 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func signedVarint() throws(WireError) -> Int64 {
        let raw = try varint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    mutating func varint<T: FixedWidthInteger>(as: T.Type, _ what: StaticString) throws(WireError) -> T {
        guard let value = T(exactly: try varint()) else { throw WireError(.malformedFrame, "\(what) out of range") }
        return value
    }

    mutating func signedVarint<T: FixedWidthInteger>(as: T.Type, _ what: StaticString) throws(WireError) -> T {
        guard let value = T(exactly: try signedVarint()) else {
            throw WireError(.malformedFrame, "\(what) out of range")
        }
        return value
    }

    /// An element count, checked against the bytes left (see `ByteBuffer.readCount`).
    mutating func count(minimumElementSize: Int = 1, _ what: StaticString) throws(WireError) -> Int {
        let count = try varint()
        guard count <= UInt64(remaining / max(minimumElementSize, 1)) else {
            throw WireError(.malformedFrame, "\(what) count exceeds the frame")
        }
        return Int(count)
    }

    /// A varint-length-prefixed UTF-8 string.
    mutating func string() throws(WireError) -> String {
        let length = try count("string byte")
        let bytes = UnsafeRawBufferPointer(rebasing: memory[offset..<offset + length])
        offset += length
        var combined: UInt8 = 0
        for byte in bytes { combined |= byte }
        // ASCII needs no validation (see `ByteBuffer.readWireString`).
        if combined < 0x80 { return String(decoding: bytes, as: UTF8.self) }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw WireError(.malformedFrame, "string is not valid UTF-8")
        }
        return string
    }
}

/// Writes protocol primitives into memory the caller has sized (see the bound computed in `encodeRows`).
private struct RawWriter {
    let memory: UnsafeMutableRawBufferPointer
    var offset = 0

    init(memory: UnsafeMutableRawBufferPointer) { self.memory = memory }

    mutating func byte(_ value: UInt8) {
        memory[offset] = value
        offset += 1
    }

    mutating func varint(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            byte(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        byte(UInt8(remaining))
    }

    mutating func signedVarint(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            guard let source = utf8.baseAddress, !utf8.isEmpty, let target = memory.baseAddress else { return }
            (target + offset).copyMemory(from: source, byteCount: utf8.count)
            offset += utf8.count
        }
    }
}
