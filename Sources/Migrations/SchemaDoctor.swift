public import Postgres

/// What `doctor` found.
public struct SchemaDoctorReport: Sendable, Hashable {
    /// The migration version the comparison used (the live database's newest applied migration).
    public var comparedVersion: Int
    /// Differences between the live schema and the one the migrations produce, in plain words.
    public var drift: [String]
    /// Migrations not yet applied to the live database (not drift, but worth saying).
    public var pending: [String]

    /// Whether the live schema is exactly what the migrations produce.
    public var isClean: Bool { drift.isEmpty }
}

/// Compares a live database with what the migrations produce. Production is never the source of truth: the
/// expected schema is built from the migration files in a scratch database, never read from another server.
public enum SchemaDoctor {
    /// Builds the expected schema (scratch database, `migrate up` to the live database's applied version,
    /// introspect, drop) and compares the live database with it.
    /// - Parameters:
    ///   - live: connection to the database to check; it needs CREATEDB to create the scratch database.
    ///   - files: the migration files.
    /// - Throws: planner errors when the history itself has drifted (a changed or missing file),
    ///   `.database` when the scratch database cannot be created or read.
    public static func examine(live: PostgresConnection, files: [MigrationFile],
                               log: @escaping (String) -> Void = { _ in }) throws(MigrationError)
        -> SchemaDoctorReport
    {
        let runner = MigrationRunner(connection: live, files: files)
        let applied = try runner.appliedMigrations()
        try MigrationPlanner.verify(files: files, applied: applied)
        let version = applied.map(\.version).max() ?? 0
        let pending = MigrationPlanner.status(files: files, applied: applied)
            .filter { $0.state == .pending }.map(\.identifier)

        let expected = try expectedSnapshot(server: live, files: files, upTo: version, log: log)
        let actual: SchemaSnapshot
        do {
            actual = try SchemaSnapshot.read(live)
        } catch {
            throw MigrationRunner.databaseError("reading the live database's catalog failed", error)
        }
        return SchemaDoctorReport(comparedVersion: version, drift: actual.drift(from: expected), pending: pending)
    }

    /// The schema the migrations up to `version` produce, built in a scratch database on `server`'s cluster.
    public static func expectedSnapshot(server: PostgresConnection, files: [MigrationFile], upTo version: Int,
                                        log: @escaping (String) -> Void = { _ in }) throws(MigrationError)
        -> SchemaSnapshot
    {
        let name = "explore_doctor_\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF)"
        let quoted: String
        do {
            quoted = try PostgresIdentifier.quoted(name)
            try server.executeScript("CREATE DATABASE \(quoted) TEMPLATE template0 ENCODING 'UTF8'")
        } catch {
            throw MigrationRunner.databaseError(
                "creating the scratch database for the expected schema failed (doctor needs CREATEDB)", error)
        }
        log("building the expected schema in scratch database \(name)")
        defer { try? server.executeScript("DROP DATABASE IF EXISTS \(quoted) WITH (FORCE)") }
        let scratch: PostgresConnection
        do {
            scratch = try PostgresConnection.connect(server.configuration.with(database: name))
        } catch {
            throw MigrationRunner.databaseError("connecting to the scratch database failed", error)
        }
        defer { scratch.close() }
        if version > 0 {
            try MigrationRunner(connection: scratch, files: files.filter { $0.version <= version }).up()
        }
        do {
            return try SchemaSnapshot.read(scratch)
        } catch {
            throw MigrationRunner.databaseError("reading the scratch database's catalog failed", error)
        }
    }
}
