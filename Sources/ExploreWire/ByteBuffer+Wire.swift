public import NIOCore

/// Primitive encodings of the protocol: unsigned LEB128 varints, zigzag signed varints and length-prefixed
/// strings. Every reader checks lengths against the bytes actually present before allocating.
extension ByteBuffer {
    /// Writes `value` as unsigned LEB128: 7 bits per byte, least significant group first, high bit = "more".
    @inlinable
    public mutating func writeVarint(_ value: UInt64) {
        if value < 0x80 {
            writeInteger(UInt8(value))
            return
        }
        // Longer values are assembled on the stack and written with one bounds and capacity check.
        var scratch: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            var remaining = value
            var count = 0
            while remaining >= 0x80 {
                raw[count] = UInt8(truncatingIfNeeded: remaining) | 0x80
                remaining >>= 7
                count += 1
            }
            raw[count] = UInt8(remaining)
            writeBytes(UnsafeRawBufferPointer(rebasing: raw[0...count]))
        }
    }

    /// Writes a signed value zigzag-mapped (0, -1, 1, -2, … → 0, 1, 2, 3, …) as a varint.
    @inlinable
    public mutating func writeSignedVarint(_ value: Int64) {
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    /// - Throws: ``WireError/Code/malformedFrame`` when truncated, longer than 10 bytes or above `UInt64.max`.
    @inlinable
    public mutating func readVarint() throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else {
                throw WireError(.malformedFrame, "truncated varint")
            }
            if shift == 63 && byte > 1 {
                throw WireError(.malformedFrame, "varint overflows 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Reads a zigzag signed varint.
    @inlinable
    public mutating func readSignedVarint() throws(WireError) -> Int64 {
        let raw = try readVarint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Reads an unsigned varint that must fit `T`.
    @inlinable
    public mutating func readVarint<T: FixedWidthInteger>(as: T.Type, _ what: StaticString) throws(WireError) -> T {
        let raw = try readVarint()
        guard let value = T(exactly: raw) else {
            throw WireError(.malformedFrame, "\(what) out of range")
        }
        return value
    }

    /// Reads a signed varint that must fit `T`.
    @inlinable
    public mutating func readSignedVarint<T: FixedWidthInteger>(as: T.Type, _ what: StaticString) throws(WireError) -> T {
        let raw = try readSignedVarint()
        guard let value = T(exactly: raw) else {
            throw WireError(.malformedFrame, "\(what) out of range")
        }
        return value
    }

    /// Reads an element count and checks it against the bytes left, given each element takes at least
    /// `minimumElementSize` bytes, so a forged count can never make the decoder reserve unbounded memory.
    @inlinable
    public mutating func readCount(minimumElementSize: Int = 1, _ what: StaticString) throws(WireError) -> Int {
        let count = try readVarint()
        guard count <= UInt64(readableBytes / max(minimumElementSize, 1)) else {
            throw WireError(.malformedFrame, "\(what) count exceeds the frame")
        }
        return Int(count)
    }

    /// Writes a string as varint byte length + UTF-8 bytes.
    @inlinable
    public mutating func writeWireString(_ string: String) {
        writeVarint(UInt64(string.utf8.count))
        writeString(string)
    }

    /// Reads a varint-length-prefixed UTF-8 string.
    /// - Throws: ``WireError/Code/malformedFrame`` when truncated or not valid UTF-8.
    @inlinable
    public mutating func readWireString() throws(WireError) -> String {
        let length = try readCount("string byte")
        // Fast path: ASCII needs no validation and decodes without the generic validator, which dominated decoding
        // time in profiles (about 1 µs per short string).
        let isASCII = withUnsafeReadableBytes { bytes in
            var combined: UInt8 = 0
            for index in 0..<length { combined |= bytes[index] }
            return combined < 0x80
        }
        if isASCII, let string = readString(length: length) { return string }
        guard let bytes = readBytes(length: length) else {
            throw WireError(.malformedFrame, "truncated string")
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw WireError(.malformedFrame, "string is not valid UTF-8")
        }
        return string
    }

    /// Writes opaque bytes as varint length + bytes.
    @inlinable
    public mutating func writeWireBytes(_ bytes: [UInt8]) {
        writeVarint(UInt64(bytes.count))
        writeBytes(bytes)
    }

    /// Reads varint length + opaque bytes.
    @inlinable
    public mutating func readWireBytes() throws(WireError) -> [UInt8] {
        let length = try readCount("byte string")
        guard let bytes = readBytes(length: length) else {
            throw WireError(.malformedFrame, "truncated byte string")
        }
        return bytes
    }

    /// Reads a fixed-width big-endian integer.
    @inlinable
    public mutating func readFixed<T: FixedWidthInteger>(_ type: T.Type, _ what: StaticString) throws(WireError) -> T {
        guard let value = readInteger(endianness: .big, as: T.self) else {
            throw WireError(.malformedFrame, "truncated \(what)")
        }
        return value
    }
}
