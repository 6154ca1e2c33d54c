public import DemoData
public import Postgres

/// Row counts loaded by `DemoSeeder`.
public struct DemoSeedSummary: Sendable, Hashable {
    public var organizations = 0
    public var users = 0
    public var locations = 0
    public var listings = 0
    public var developments = 0
    public var existingProperties = 0
    public var media = 0
    public var drafts = 0
}

/// Loads a `DemoDataset` into the base tables with `COPY … FROM STDIN`, in one transaction.
public enum DemoSeeder {
    /// The base tables the seeder fills, parents first.
    public static let tables = [
        "core.organizations", "core.users", "property.locations", "property.listings", "property.developments",
        "property.existing_properties", "property.media", "wizard.listing_drafts",
    ]

    /// Loads `dataset`.
    /// - Parameters:
    ///   - connection: a migrated database.
    ///   - replace: delete existing rows of the base tables first; without it, a non-empty table is refused.
    ///   - progress: a line now and then on long runs.
    /// - Throws: `.seedFailed` naming the cause; the transaction is rolled back, so nothing is half-loaded.
    @discardableResult
    public static func seed(_ dataset: DemoDataset, into connection: PostgresConnection, replace: Bool = false,
                            progress: (String) -> Void = { _ in }) throws(MigrationError) -> DemoSeedSummary
    {
        do {
            return try connection.transaction { () throws -> DemoSeedSummary in
                try prepareTables(connection, replace: replace)
                // Row-by-row foreign-key triggers and index maintenance dominate a bulk load. The tables are
                // empty here, so keys and indexes are dropped for the load and rebuilt after it: rebuilding sorts
                // once and re-adding a foreign key validates every row with one join, inside this transaction, so
                // a bad row still fails the whole load and the schema ends exactly as it was.
                try connection.executeScript("SET LOCAL maintenance_work_mem = '256MB'")
                let restore = try suspendKeysAndIndexes(connection)
                let summary = try load(dataset, connection, progress: progress)
                // Fresh statistics let the key validations below plan hash joins instead of row-by-row probes.
                try connection.executeScript("ANALYZE " + tables.joined(separator: ", "))
                progress("rebuilding indexes and validating keys")
                let clock = ContinuousClock()
                for statement in restore {
                    let start = clock.now
                    try connection.executeScript(statement)
                    if clock.now - start > .seconds(2) {
                        progress("slow restore (\(clock.now - start)): \(statement)")
                    }
                }
                progress("indexes rebuilt and keys validated; committing")
                for table in tables where table != "property.existing_properties" && table != "property.developments" {
                    // Explicit ids were loaded: move each identity past them so later inserts do not collide.
                    try connection.query("""
                        SELECT setval(pg_get_serial_sequence($1, 'id'), coalesce(max(id), 0) + 1, false)
                        FROM \(table)
                        """, [table])
                }
                return summary
            }
        } catch let error as MigrationError {
            throw error
        } catch let error as PostgresError {
            if error.sqlState == "42P01" || error.sqlState == "3F000" {
                throw MigrationError(.seedFailed,
                    "seed-demo failed: \(PostgresErrorText.oneLine(error)); run `explore-projector migrate up` "
                    + "first", underlying: error)
            }
            throw MigrationError(.seedFailed,
                "seed-demo failed and was rolled back, nothing was loaded: \(PostgresErrorText.oneLine(error))",
                underlying: error)
        } catch {
            throw MigrationError(.seedFailed, "seed-demo failed and was rolled back: \(error)")
        }
    }

    /// Drops the foreign keys, primary keys, unique constraints and plain indexes of the seeded tables (and the
    /// foreign keys pointing into them); returns the statements that restore them, in a valid order.
    private static func suspendKeysAndIndexes(_ connection: PostgresConnection) throws -> [String] {
        let tableArray = "{" + tables.joined(separator: ",") + "}"
        let constraints = try connection.query("""
            SELECT con.conrelid::regclass::text, quote_ident(con.conname), pg_get_constraintdef(con.oid),
                   con.contype::text
            FROM pg_constraint con
            WHERE (con.contype = 'f' AND (con.conrelid = ANY ($1::regclass[]) OR con.confrelid = ANY ($1::regclass[])))
               OR (con.contype IN ('p', 'u') AND con.conrelid = ANY ($1::regclass[]))
            ORDER BY con.contype = 'f' DESC, con.conrelid::regclass::text, con.conname
            """, [tableArray])
        let indexes = try connection.query("""
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            WHERE i.indrelid = ANY ($1::regclass[])
              AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
            ORDER BY 1
            """, [tableArray])
        var keyRestores: [String] = []
        var foreignKeyRestores: [String] = []
        for row in constraints {
            let table = row[0] ?? "", name = row[1] ?? "", definition = row[2] ?? ""
            try connection.executeScript("ALTER TABLE \(table) DROP CONSTRAINT \(name)")
            let restore = "ALTER TABLE \(table) ADD CONSTRAINT \(name) \(definition)"
            if row[3] == "f" { foreignKeyRestores.append(restore) } else { keyRestores.append(restore) }
        }
        var indexRestores: [String] = []
        for row in indexes {
            try connection.executeScript("DROP INDEX \(row[0] ?? "")")
            indexRestores.append(row[1] ?? "")
        }
        return keyRestores + indexRestores + foreignKeyRestores
    }

    private static func prepareTables(_ connection: PostgresConnection, replace: Bool) throws {
        var occupied: [String] = []
        for table in tables {
            if try connection.query("SELECT EXISTS (SELECT 1 FROM \(table))").first?.decode(0, as: Bool.self)
                == true
            {
                occupied.append(table)
            }
        }
        guard !occupied.isEmpty else { return }
        guard replace else {
            throw MigrationError(.seedFailed,
                "the database already holds data (\(occupied.joined(separator: ", "))); pass --replace to delete "
                + "it and load the demo set, or use an empty database")
        }
        try connection.executeScript("TRUNCATE " + tables.joined(separator: ", ") + " RESTART IDENTITY")
    }

    private static func load(_ dataset: DemoDataset, _ connection: PostgresConnection,
                             progress: (String) -> Void) throws -> DemoSeedSummary
    {
        var summary = DemoSeedSummary()
        try connection.copyFrom("COPY core.organizations (id, name, kind) FROM STDIN") { writer in
            var rows = CopyRows()
            for id in 1...dataset.organizationCount {
                rows.field(Int64(id)); rows.field("Demo Developer \(id)"); rows.last("developer")
                try rows.flushIfFull(&writer)
            }
            try rows.flush(&writer)
        }
        summary.organizations = dataset.organizationCount
        try connection.copyFrom("COPY core.users (id, email, display_name, organization_id) FROM STDIN") { writer in
            var rows = CopyRows()
            for id in 1...dataset.userCount {
                rows.field(Int64(id)); rows.field("user\(id)@example.com"); rows.field("Demo User \(id)")
                // The first users work for the organizations, one each; the rest are private sellers.
                if id <= dataset.organizationCount { rows.last(Int64(id)) } else { rows.lastNull() }
                try rows.flushIfFull(&writer)
            }
            try rows.flush(&writer)
        }
        summary.users = dataset.userCount
        try connection.copyFrom("COPY property.locations (id, city, area) FROM STDIN") { writer in
            var rows = CopyRows()
            for location in dataset.locations {
                rows.field(location.id); rows.field(location.city); rows.last(location.area)
                try rows.flushIfFull(&writer)
            }
            try rows.flush(&writer)
        }
        summary.locations = dataset.locations.count

        // One generation pass: listings stream straight into COPY, the other tables' rows are kept as COPY text
        // and sent after (one COPY runs at a time on a connection).
        var developments = CopyRows(flushAt: Int.max)
        var existing = CopyRows(flushAt: Int.max)
        var media = CopyRows(flushAt: Int.max)
        let progressEvery = max(100_000, dataset.listingCount / 10)
        try connection.copyFrom("""
            COPY property.listings (id, type, status, title, location_id, owner_user_id, created_at, updated_at)
            FROM STDIN
            """) { writer in
            var rows = CopyRows()
            for index in 0..<dataset.listingCount {
                let listing = dataset.listing(at: index)
                let created = CopyRows.timestamp(microseconds: listing.createdAt)
                rows.field(listing.id); rows.field(listing.type.name); rows.field(listing.status)
                rows.field(listing.title); rows.field(listing.locationID); rows.field(listing.ownerUserID)
                rows.fieldRaw(created); rows.lastRaw(created)
                if let development = listing.development {
                    developments.field(listing.id); developments.field(development.priceFrom)
                    developments.field(development.priceTo); developments.field(Int64(development.unitsTotal))
                    developments.field(Int64(development.completionYear))
                    developments.last(development.developerOrganizationID)
                    summary.developments += 1
                }
                if let property = listing.existing {
                    existing.field(listing.id); existing.field(property.price)
                    existing.field(Int64(property.bedrooms)); existing.field(Int64(property.bathrooms))
                    existing.last(Int64(property.floorAreaSquareMeters))
                    summary.existingProperties += 1
                }
                for item in listing.media {
                    media.field(listing.id); media.field(item.url); media.fieldRaw(item.isPrimary ? "t" : "f")
                    media.last(Int64(item.position))
                    summary.media += 1
                }
                try rows.flushIfFull(&writer)
                if (index + 1) % progressEvery == 0 && index + 1 < dataset.listingCount {
                    progress("generated \(index + 1) of \(dataset.listingCount) listings")
                }
            }
            try rows.flush(&writer)
        }
        summary.listings = dataset.listingCount
        progress("loaded \(summary.listings) listings; loading type-specific rows and media")
        try connection.copyFrom("""
            COPY property.developments (listing_id, price_from, price_to, units_total, completion_year,
                                        developer_organization_id) FROM STDIN
            """) { writer in try developments.flush(&writer) }
        developments = CopyRows()
        try connection.copyFrom("""
            COPY property.existing_properties (listing_id, price, bedrooms, bathrooms, floor_area_square_meters)
            FROM STDIN
            """) { writer in try existing.flush(&writer) }
        existing = CopyRows()
        try connection.copyFrom("COPY property.media (listing_id, url, is_primary, position) FROM STDIN") { writer in
            try media.flush(&writer)
        }
        media = CopyRows()
        progress("loaded developments, existing properties and media; loading drafts")
        try connection.copyFrom("""
            COPY wizard.listing_drafts (id, owner_user_id, listing_type, step, status, payload) FROM STDIN
            """) { writer in
            var rows = CopyRows()
            for index in 0..<dataset.draftCount {
                let draft = dataset.draft(at: index)
                rows.field(draft.id); rows.field(draft.ownerUserID); rows.field(draft.type.name)
                rows.field(Int64(draft.step)); rows.field(draft.status); rows.last(draft.payloadJSON)
                try rows.flushIfFull(&writer)
            }
            try rows.flush(&writer)
        }
        summary.drafts = dataset.draftCount
        return summary
    }
}

/// Builds `COPY … FROM STDIN` text-format rows into a byte buffer: fields separated by tabs, rows by newlines,
/// `\N` for NULL, and backslash, tab, newline and carriage return escaped.
struct CopyRows {
    private(set) var bytes: [UInt8] = []
    private let flushAt: Int

    init(flushAt: Int = 1 << 20) {
        self.flushAt = flushAt
        bytes.reserveCapacity(min(flushAt, 1 << 20) + 4_096)
    }

    mutating func field(_ value: Int64) { appendInteger(value); bytes.append(0x09) }
    mutating func field(_ text: String) { appendEscaped(text); bytes.append(0x09) }
    mutating func fieldRaw(_ text: String) { bytes.append(contentsOf: text.utf8); bytes.append(0x09) }
    mutating func last(_ value: Int64) { appendInteger(value); bytes.append(0x0A) }
    mutating func last(_ text: String) { appendEscaped(text); bytes.append(0x0A) }
    mutating func lastRaw(_ text: String) { bytes.append(contentsOf: text.utf8); bytes.append(0x0A) }
    mutating func lastNull() { bytes.append(contentsOf: [0x5C, 0x4E, 0x0A]) }

    mutating func flushIfFull(_ writer: inout PostgresCopyWriter) throws {
        if bytes.count >= flushAt { try flush(&writer) }
    }

    mutating func flush(_ writer: inout PostgresCopyWriter) throws {
        guard !bytes.isEmpty else { return }
        try bytes.withUnsafeBytes { raw in try writer.write(raw) }
        bytes.removeAll(keepingCapacity: true)
    }

    private mutating func appendInteger(_ value: Int64) {
        if value < 0 { bytes.append(0x2D) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(truncatingIfNeeded: magnitude % 10) + 0x30
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for index in stride(from: count - 1, through: 0, by: -1) { bytes.append(buffer[index]) }
        }
    }

    private mutating func appendEscaped(_ text: String) {
        for byte in text.utf8 {
            switch byte {
            case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
            case 0x09: bytes.append(0x5C); bytes.append(0x74)
            case 0x0A: bytes.append(0x5C); bytes.append(0x6E)
            case 0x0D: bytes.append(0x5C); bytes.append(0x72)
            default: bytes.append(byte)
            }
        }
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff+00` for microseconds since the Unix epoch (proleptic Gregorian, UTC).
    static func timestamp(microseconds: Int64) -> String {
        let (seconds, micros) = microseconds.quotientAndRemainder(dividingBy: 1_000_000)
        let adjustedSeconds = micros < 0 ? seconds - 1 : seconds
        let fraction = micros < 0 ? micros + 1_000_000 : micros
        let (days, secondOfDay) = adjustedSeconds.quotientAndRemainder(dividingBy: 86_400)
        let dayNumber = secondOfDay < 0 ? days - 1 : days
        let second = secondOfDay < 0 ? secondOfDay + 86_400 : secondOfDay
        // Days to civil date (Howard Hinnant's algorithm).
        let z = dayNumber + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2)) \(pad(second / 3_600, 2)):"
            + "\(pad(second / 60 % 60, 2)):\(pad(second % 60, 2)).\(pad(fraction, 6))+00"
    }
}
