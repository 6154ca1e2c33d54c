import ExploreQuery

/// Turns read-model rows in PostgreSQL's text format into `ExploreListing`s.
///
/// The cache holds `city` and `area` as non-optional text; a listing whose location no longer exists has NULL
/// there in the read model (the defining query's LEFT JOIN), and the cache holds it as the empty string.
enum ProjectionRowDecoder {
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

    /// Decodes one line of `COPY … TO STDOUT` text format (tab-separated, `\N` for NULL, backslash escapes).
    static func decode(copyLine bytes: UnsafeRawBufferPointer) throws(ProjectorError) -> ExploreListing {
        try decode(splitCopyLine(bytes))
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
