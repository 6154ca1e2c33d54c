import ExploreQuery

/// Turns read-model rows in PostgreSQL's text format into `ExploreListing`s.
///
/// The cache holds `city` and `area` as non-optional text; a listing whose location no longer exists has NULL
/// there in the read model (the defining query's LEFT JOIN), and the cache holds it as the empty string.
enum ProjectionRowDecoder {
    /// The columns decoded into the cache's text fields (see ``ListingChange/upsertKeepingText(_:)``).
    static let textColumns: Set<String> = ["status", "title", "primary_image_url", "city", "area"]

    /// Decodes the 13 fields of ``ProjectionDefinition/cacheColumns(_:)`` (`nil` is SQL NULL).
    static func decode(_ fields: [String?]) throws(ProjectorError) -> ExploreListing {
        guard fields.count == 13 else {
            throw ProjectorError(code: .invalidRow, message: "expected 13 fields, got \(fields.count)")
        }
        func required(_ index: Int) throws(ProjectorError) -> String {
            guard let value = fields[index] else {
                throw ProjectorError(code: .invalidRow, message: "\(ProjectionDefinition.columns[index]) is NULL")
            }
            return value
        }
        func integer<T: FixedWidthInteger>(_ index: Int, _ type: T.Type) throws(ProjectorError) -> T? {
            guard let text = fields[index] else { return nil }
            guard let value = T(text) else {
                throw ProjectorError(
                    code: .invalidRow, message: "\(ProjectionDefinition.columns[index]) is not an integer")
            }
            return value
        }
        guard let id = try integer(0, Int64.self), let locationID = try integer(4, Int64.self),
              let createdAt = try integer(12, Int64.self)
        else {
            throw ProjectorError(code: .invalidRow, message: "id, location_id or created_at is NULL")
        }
        guard let listingType = ListingType(name: try required(1)) else {
            throw ProjectorError(code: .invalidRow, message: "listing \(id) has an unknown listing_type")
        }
        return ExploreListing(
            id: id, listingType: listingType, status: try required(2), title: try required(3),
            locationID: locationID, priceFrom: try integer(5, Int64.self), priceTo: try integer(6, Int64.self),
            bedrooms: try integer(7, Int32.self), bathrooms: try integer(8, Int32.self),
            primaryImageURL: fields[9], city: fields[10] ?? "", area: fields[11] ?? "", createdAt: createdAt)
    }

    /// Decodes one line of `COPY … TO STDOUT` text format (tab-separated, `\\N` for NULL, backslash escapes).
    ///
    /// The cache bootstrap decodes a million of these: fields are located in one pass over the bytes and
    /// integers parsed from them in place, so only the text columns become `String`s (no per-field strings, no
    /// field array). Equivalent to ``decode(_:)`` of ``splitCopyLine(_:)`` (a test compares them).
    static func decode(copyLine bytes: UnsafeRawBufferPointer) throws(ProjectorError) -> ExploreListing {
        let outcome = withUnsafeTemporaryAllocation(of: Int.self, capacity: 26) { bounds in
            Result { () throws(ProjectorError) -> ExploreListing in try decode(copyLine: bytes, bounds: bounds) }
        }
        return try outcome.get()
    }

    /// Field i spans `bounds[2 i] ..< bounds[2 i + 1]`.
    private static func decode(copyLine bytes: UnsafeRawBufferPointer, bounds: UnsafeMutableBufferPointer<Int>)
        throws(ProjectorError) -> ExploreListing
    {
        var escaped = 0  // bit i: field i holds a backslash
        var count = 0
        var fieldStart = 0
        var index = 0
        let total = bytes.count
        func finish(at end: Int) throws(ProjectorError) {
            guard count < 13 else { throw ProjectorError(code: .invalidRow, message: "expected 13 fields, got more") }
            bounds[2 * count] = fieldStart
            bounds[2 * count + 1] = end
            count += 1
        }
        while index < total {
            let byte = bytes[index]
            if byte == 9 {  // tab
                try finish(at: index)
                fieldStart = index + 1
            } else if byte == 10 {  // newline ends the row
                break
            } else if byte == 92 {  // backslash: the escaped byte is never a separator
                escaped |= 1 << count
                index += 1
            }
            index += 1
        }
        try finish(at: min(index, total))
        guard count == 13 else {
            throw ProjectorError(code: .invalidRow, message: "expected 13 fields, got \(count)")
        }
        func startOf(_ field: Int) -> Int { bounds[2 * field] }
        func endOf(_ field: Int) -> Int { bounds[2 * field + 1] }

        func isNull(_ field: Int) -> Bool {
            let start = startOf(field)
            return endOf(field) - start == 2 && bytes[start] == 92 && bytes[start + 1] == 78  // \N
        }
        func text(_ field: Int) -> String? {
            if isNull(field) { return nil }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[startOf(field)..<endOf(field)])
            if escaped & (1 << field) == 0 { return String(decoding: slice, as: UTF8.self) }
            return splitCopyLine(slice).first ?? ""
        }
        func required(_ field: Int) throws(ProjectorError) -> String {
            guard let value = text(field) else {
                throw ProjectorError(code: .invalidRow, message: "\(ProjectionDefinition.columns[field]) is NULL")
            }
            return value
        }
        func integer(_ field: Int) throws(ProjectorError) -> Int64? {
            if isNull(field) { return nil }
            var position = startOf(field)
            let end = endOf(field)
            let negative = position < end && bytes[position] == 45  // -
            if negative { position += 1 }
            guard position < end else {
                throw ProjectorError(code: .invalidRow, message: "\(ProjectionDefinition.columns[field]) is not an integer")
            }
            var value: Int64 = 0
            while position < end {
                let digit = Int64(bytes[position]) - 48
                guard digit >= 0 && digit <= 9 else {
                    throw ProjectorError(
                        code: .invalidRow, message: "\(ProjectionDefinition.columns[field]) is not an integer")
                }
                let (shifted, overflowA) = value.multipliedReportingOverflow(by: 10)
                let (next, overflowB) = negative ? shifted.subtractingReportingOverflow(digit)
                                                 : shifted.addingReportingOverflow(digit)
                guard !overflowA && !overflowB else {
                    throw ProjectorError(
                        code: .invalidRow, message: "\(ProjectionDefinition.columns[field]) is out of range")
                }
                value = next
                position += 1
            }
            return value
        }
        func small(_ field: Int) throws(ProjectorError) -> Int32? {
            guard let value = try integer(field) else { return nil }
            guard let narrowed = Int32(exactly: value) else {
                throw ProjectorError(code: .invalidRow, message: "\(ProjectionDefinition.columns[field]) is out of range")
            }
            return narrowed
        }

        guard let id = try integer(0), let locationID = try integer(4), let createdAt = try integer(12) else {
            throw ProjectorError(code: .invalidRow, message: "id, location_id or created_at is NULL")
        }
        guard let listingType = ListingType(name: try required(1)) else {
            throw ProjectorError(code: .invalidRow, message: "listing \(id) has an unknown listing_type")
        }
        return ExploreListing(
            id: id, listingType: listingType, status: try required(2), title: try required(3),
            locationID: locationID, priceFrom: try integer(5), priceTo: try integer(6),
            bedrooms: try small(7), bathrooms: try small(8), primaryImageURL: text(9),
            city: text(10) ?? "", area: text(11) ?? "", createdAt: createdAt)
    }

    /// Splits a COPY text line into fields, undoing the escapes COPY writes.
    static func splitCopyLine(_ bytes: UnsafeRawBufferPointer) -> [String?] {
        var fields: [String?] = []
        var current: [UInt8] = []
        var index = 0
        var isNull = false
        func finish() {
            fields.append(isNull ? nil : String(decoding: current, as: UTF8.self))
            current.removeAll(keepingCapacity: true)
            isNull = false
        }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\t"):
                finish()
            case UInt8(ascii: "\n"):
                finish()
                return fields
            case UInt8(ascii: "\\") where index < bytes.count:
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "N") where current.isEmpty: isNull = true
                case UInt8(ascii: "n"): current.append(10)
                case UInt8(ascii: "t"): current.append(9)
                case UInt8(ascii: "r"): current.append(13)
                case UInt8(ascii: "b"): current.append(8)
                case UInt8(ascii: "f"): current.append(12)
                case UInt8(ascii: "v"): current.append(11)
                default: current.append(escaped)
                }
            default:
                current.append(byte)
            }
        }
        finish()
        return fields
    }
}
