public import NIOCore

/// Splits a byte stream into frame bodies (the bytes after each length prefix).
///
/// The declared length is checked against the maximum *before* any body byte is buffered, so a forged length
/// can never make the decoder hold more than `maximumFrameSize` bytes.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maximumFrameSize: Int

    /// - Parameter maximumFrameSize: largest accepted body length in bytes (default 1 MiB).
    public init(maximumFrameSize: Int = WireProtocol.defaultMaximumFrameSize) {
        self.maximumFrameSize = maximumFrameSize
    }

    /// Returns the next frame body, `nil` when more bytes are needed.
    /// - Throws: ``WireError/Code/frameTooLarge`` for a length of 0 or above the maximum; the stream cannot be
    ///   resynchronised after that.
    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        guard length >= 1, length <= maximumFrameSize else {
            throw WireError(.frameTooLarge, "declared frame length \(length) outside 1...\(maximumFrameSize)")
        }
        guard buffer.readableBytes >= WireProtocol.lengthPrefixSize + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: WireProtocol.lengthPrefixSize)
        return buffer.readSlice(length: Int(length))
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try decode(buffer: &buffer)
    }
}
