import DemoData
import ExploreQuery
import ExploreWire
import NIOCore
import Testing

/// Decodes every complete frame in `bytes` as requests.
func decodeRequests(_ bytes: ByteBuffer) throws -> [(UInt32, WireRequest)] {
    var stream = bytes
    var decoder = FrameDecoder()
    var out: [(UInt32, WireRequest)] = []
    while var body = try decoder.decode(buffer: &stream) {
        let header = try WireCodec.decodeHeader(&body)
        out.append((header.requestID, try WireCodec.decodeRequest(header, &body)))
    }
    return out
}

func decodeResponses(_ bytes: ByteBuffer) throws -> [(UInt32, WireResponse)] {
    var stream = bytes
    var decoder = FrameDecoder()
    var out: [(UInt32, WireResponse)] = []
    while var body = try decoder.decode(buffer: &stream) {
        let header = try WireCodec.decodeHeader(&body)
        out.append((header.requestID, try WireCodec.decodeResponse(header, &body)))
    }
    return out
}

@Suite("Wire codec")
struct CodecTests {
    @Test("varints round-trip at every width and reject overflow")
    func varints() throws {
        var values: [UInt64] = [0, 1, 127, 128, 255, 16_383, 16_384, UInt64(UInt32.max), UInt64.max, UInt64.max - 1]
        var rng = SplitMix64(seed: 1)
        for _ in 0..<2_000 { values.append(rng.next() >> UInt64.random(in: 0...63, using: &rng)) }
        for value in values {
            var buffer = ByteBuffer()
            buffer.writeVarint(value)
            #expect(buffer.readableBytes == max(1, (64 - value.leadingZeroBitCount + 6) / 7))
            #expect(try buffer.readVarint() == value)
            let signed = Int64(bitPattern: value)
            buffer.writeSignedVarint(signed)
            #expect(try buffer.readSignedVarint() == signed)
        }
        var overflow = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
        #expect(throws: WireError(.malformedFrame, "varint overflows 64 bits")) { try overflow.readVarint() }
        var endless = ByteBuffer(bytes: [UInt8](repeating: 0x80, count: 11))
        #expect(throws: WireError.self) { try endless.readVarint() }
        var truncated = ByteBuffer(bytes: [0x80])
        #expect(throws: WireError(.malformedFrame, "truncated varint")) { try truncated.readVarint() }
    }

    @Test("every request round-trips (property test over random messages)")
    func requestRoundTrip() throws {
        var random = RandomMessages(seed: 42)
        for index in 0..<3_000 {
            let request = random.request()
            var buffer = ByteBuffer()
            WireCodec.encode(request, requestID: UInt32(index), into: &buffer)
            let decoded = try decodeRequests(buffer)
            #expect(decoded.count == 1)
            #expect(decoded.first?.0 == UInt32(index))
            #expect(decoded.first?.1 == request)
        }
    }

    @Test("every response round-trips (property test over random messages)")
    func responseRoundTrip() throws {
        var random = RandomMessages(seed: 7)
        for index in 0..<3_000 {
            let response = random.response()
            var buffer = ByteBuffer()
            let id = UInt32.max - UInt32(index)
            WireCodec.encode(response, requestID: id, into: &buffer)
            let decoded = try decodeResponses(buffer)
            #expect(decoded.count == 1)
            #expect(decoded.first?.0 == id)
            #expect(decoded.first?.1 == response)
        }
    }

    @Test("rows keep only the selected columns")
    func projection() throws {
        var random = RandomMessages(seed: 9)
        for _ in 0..<500 {
            let columns = random.columns()
            let rows = (0..<5).map { _ in random.row() }
            var buffer = ByteBuffer()
            WireCodec.encode(.rows(columns: columns, rows: rows), requestID: 1, into: &buffer)
            let decoded = try decodeResponses(buffer)
            #expect(decoded.first?.1 == .rows(columns: columns, rows: rows.map { $0.projected(onto: columns) }))
        }
    }

    @Test("a pipelined stream decodes identically when fed one byte at a time")
    func byteAtATime() throws {
        var random = RandomMessages(seed: 99)
        var stream = ByteBuffer()
        var expected: [(UInt32, WireRequest)] = []
        for index in 0..<300 {
            let request = random.request()
            WireCodec.encode(request, requestID: UInt32(index * 1_000), into: &stream)
            expected.append((UInt32(index * 1_000), request))
        }
        var decoder = FrameDecoder()
        var accumulated = ByteBuffer()
        var decoded: [(UInt32, WireRequest)] = []
        while let byte = stream.readInteger(as: UInt8.self) {
            accumulated.writeInteger(byte)
            while var body = try decoder.decode(buffer: &accumulated) {
                let header = try WireCodec.decodeHeader(&body)
                decoded.append((header.requestID, try WireCodec.decodeRequest(header, &body)))
            }
        }
        #expect(accumulated.readableBytes == 0)
        #expect(decoded.count == expected.count)
        for (got, want) in zip(decoded, expected) {
            #expect(got.0 == want.0)
            #expect(got.1 == want.1)
        }
    }

    @Test("a declared length above the maximum fails before the body arrives")
    func oversizedLength() throws {
        var decoder = FrameDecoder(maximumFrameSize: 1_024)
        var buffer = ByteBuffer(bytes: [0x00, 0x00, 0x04, 0x01])
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &buffer) }
        var zero = ByteBuffer(bytes: [0x00, 0x00, 0x00, 0x00])
        #expect(throws: WireError.self) { _ = try decoder.decode(buffer: &zero) }
        var exact = ByteBuffer(bytes: [0x00, 0x00, 0x04, 0x00])
        #expect(try decoder.decode(buffer: &exact) == nil)
    }

    @Test("strict decoding: trailing bytes, unknown opcodes, flags and enum values are refused")
    func strictness() throws {
        func body(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
        func requestError(_ bytes: [UInt8]) -> WireError.Code? {
            var buffer = body(bytes)
            do {
                let header = try WireCodec.decodeHeader(&buffer)
                _ = try WireCodec.decodeRequest(header, &buffer)
                return nil
            } catch {
                return error.code
            }
        }
        #expect(requestError([0x05, 0x00, 0x01]) == nil)
        #expect(requestError([0x05, 0x00, 0x01, 0x00]) == .malformedFrame)
        #expect(requestError([0x42, 0x00, 0x01]) == .unknownOpcode)
        #expect(requestError([0x05, 0x01, 0x01]) == .invalidFlags)
        #expect(requestError([0x05]) == .malformedFrame)
        #expect(requestError([0x05, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) == .malformedFrame)
        #expect(requestError([0x01, 0x00, 0x00, 0x45, 0x58, 0x50, 0x4D, 0x01, 0x01, 0x00]) == .badHandshake)
        // SEARCH with sort 9.
        #expect(requestError([0x03, 0x00, 0x01, 0x09, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]) == .malformedFrame)
        // GET claiming 2^60 ids in a 10-byte frame: refused by the count check, not by running out of memory.
        #expect(requestError([0x04, 0x00, 0x01, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]) == .malformedFrame)
        // Invalid UTF-8 in a city name.
        #expect(requestError([0x03, 0x00, 0x01, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x02, 0xC3, 0x28]) == .malformedFrame)
    }

    @Test("error mapping keeps query codes and hides internal errors")
    func errorMapping() {
        struct Opaque: Error {}
        let query = QueryError(.limitOutOfRange, "limit must be 1...1000")
        #expect(WireError(mapping: query) == WireError(.limitOutOfRange, "limit must be 1...1000"))
        #expect(WireError(mapping: query).queryError == query)
        #expect(WireError(mapping: Opaque()).code == .internalError)
        #expect(WireError(mapping: WireError(.tooManyIDs, "x")).code == .tooManyIDs)
        #expect(WireError.Code.frameTooLarge.closesConnection)
        #expect(!WireError.Code.unknownOpcode.closesConnection)
    }
}
