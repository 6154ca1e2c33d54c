/// The cursor's decoded content: where in a sort order the previous page ended.
///
/// Layout (31 bytes, little-endian):
/// ```
/// +---------+------+-------+---------+--------+-------------+----------+
/// | version | sort | group | key (8) | id (8) | filter fp(8)| check (4)|
/// +---------+------+-------+---------+--------+-------------+----------+
/// ```
/// `group` and `key` are the position inside the store's sort order (for price orders group 1 holds the
/// unpriced rows, and `key` is the order's internal key); `id` breaks ties. The fingerprint ties the cursor to
/// the filter and sort it was made for; the check word turns any corrupted byte into `malformedCursor` rather
/// than a silently wrong page.
struct CursorPosition: Sendable, Hashable {
    var sort: SortOrder
    var group: UInt8
    var key: Int64
    var id: Int64
    var fingerprint: UInt64

    static let version: UInt8 = 1
    static let encodedCount = 31

    func encoded() -> SearchCursor {
        var bytes: [UInt8] = [Self.version, sort.rawValue, group]
        bytes.reserveCapacity(Self.encodedCount)
        Self.append(UInt64(bitPattern: key), to: &bytes)
        Self.append(UInt64(bitPattern: id), to: &bytes)
        Self.append(fingerprint, to: &bytes)
        let check = UInt32(truncatingIfNeeded: Fingerprint.hash(bytes))
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: check >> UInt32(shift))) }
        return SearchCursor(bytes: bytes)
    }

    /// Decodes cursor bytes; any byte string that this function did not produce is rejected.
    init(decoding cursor: SearchCursor) throws(QueryError) {
        let bytes = cursor.bytes
        guard bytes.count == Self.encodedCount else {
            throw QueryError(.malformedCursor, "cursor has \(bytes.count) bytes, expected \(Self.encodedCount)")
        }
        var check: UInt32 = 0
        for i in 0..<4 { check |= UInt32(bytes[27 + i]) << UInt32(8 * i) }
        guard check == UInt32(truncatingIfNeeded: Fingerprint.hash(bytes[0..<27])) else {
            throw QueryError(.malformedCursor, "cursor checksum does not match")
        }
        guard bytes[0] == Self.version else { throw QueryError(.malformedCursor, "unknown cursor version") }
        guard let sort = SortOrder(rawValue: bytes[1]) else {
            throw QueryError(.malformedCursor, "cursor names an unknown sort order")
        }
        guard bytes[2] < CursorPosition.groupCount(sort) else {
            throw QueryError(.malformedCursor, "cursor position is out of range")
        }
        self.sort = sort
        group = bytes[2]
        key = Int64(bitPattern: Self.read(bytes, at: 3))
        id = Int64(bitPattern: Self.read(bytes, at: 11))
        fingerprint = Self.read(bytes, at: 19)
    }

    init(sort: SortOrder, group: UInt8, key: Int64, id: Int64, fingerprint: UInt64) {
        self.sort = sort
        self.group = group
        self.key = key
        self.id = id
        self.fingerprint = fingerprint
    }

    /// Price orders have two groups (priced rows, then unpriced); date orders one.
    static func groupCount(_ sort: SortOrder) -> UInt8 {
        switch sort {
        case .priceAscending, .priceDescending: 2
        case .newest, .oldest: 1
        }
    }

    private static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static func read(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[offset + i]) << UInt64(8 * i) }
        return value
    }
}

/// FNV-1a, 64-bit: a stable hash (unlike `Hasher`, which is seeded per process) so cursors survive restarts.
enum Fingerprint {
    static func hash<Bytes: Sequence>(_ bytes: Bytes, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64
    where Bytes.Element == UInt8 {
        var hash = seed
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// A canonical hash of everything that defines a result order: the filter (sets in sorted order) and sort.
    static func of(_ filter: SearchFilter, sort: SortOrder) -> UInt64 {
        var bytes: [UInt8] = [sort.rawValue]
        func tag(_ value: UInt8) { bytes.append(value) }
        func int(_ value: Int64?) {
            guard let value else { bytes.append(0); return }
            bytes.append(1)
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> Int64(shift))) }
        }
        func strings(_ values: Set<String>?) {
            guard let values else { bytes.append(0); return }
            bytes.append(1)
            int(Int64(values.count))
            for value in values.sorted() {
                int(Int64(value.utf8.count))
                bytes.append(contentsOf: value.utf8)
            }
        }
        func ints(_ values: [Int64]?) {
            guard let values else { bytes.append(0); return }
            bytes.append(1)
            int(Int64(values.count))
            for value in values.sorted() { int(value) }
        }
        tag(1); ints(filter.listingTypes.map { $0.map { Int64($0.rawValue) } })
        tag(2); strings(filter.statuses)
        tag(3); strings(filter.cities)
        tag(4); strings(filter.areas)
        tag(5); ints(filter.locationIDs.map(Array.init))
        tag(6); int(filter.priceMin); int(filter.priceMax)
        tag(7); int(filter.bedroomsMin.map(Int64.init)); int(filter.bedroomsMax.map(Int64.init))
        tag(8); int(filter.bathroomsMin.map(Int64.init))
        tag(9); int(filter.createdAfter); int(filter.createdBefore)
        return hash(bytes)
    }
}

extension SearchCursor {
    /// Decodes the URL-safe base64 form (RFC 4648 §5); padding is optional.
    /// - Returns: `nil` for text that is not valid base64url.
    public init?(base64URL text: String) {
        var bytes: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        var padding = 0
        for character in text.utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
            case UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "_"): value = 63
            case UInt8(ascii: "="):
                padding += 1
                continue
            default: return nil
            }
            if padding > 0 { return nil }
            buffer = buffer << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
                buffer &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits must be zero and fewer than 6 (a single trailing character cannot encode a byte).
        guard bits < 6, buffer == 0, padding <= 2 else { return nil }
        self.init(bytes: bytes)
    }

    /// The URL-safe base64 form without padding.
    public var base64URL: String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int(chunk >> UInt32(shift) & 63)]) }
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let chunk = UInt32(bytes[index]) << 16
            for shift in [18, 12] { out.append(alphabet[Int(chunk >> UInt32(shift) & 63)]) }
        } else if rest == 2 {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            for shift in [18, 12, 6] { out.append(alphabet[Int(chunk >> UInt32(shift) & 63)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
