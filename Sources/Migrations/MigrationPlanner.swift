/// One row of `public.migration_history`: a migration as it was when applied.
public struct AppliedMigration: Sendable, Hashable {
    public var version: Int
    public var name: String
    /// SHA-256 (hex) of the up file when it was applied.
    public var checksum: String
    /// SHA-256 (hex) of the down file when it was applied.
    public var downChecksum: String
    /// When it was applied, as PostgreSQL prints a `timestamptz`.
    public var appliedAt: String
    /// How long the migration's transaction took.
    public var durationMilliseconds: Int

    /// Creates a history row.
    public init(version: Int, name: String, checksum: String, downChecksum: String, appliedAt: String = "",
                durationMilliseconds: Int = 0) {
        self.version = version
        self.name = name
        self.checksum = checksum
        self.downChecksum = downChecksum
        self.appliedAt = appliedAt
        self.durationMilliseconds = durationMilliseconds
    }

    /// `NNNN_name`.
    public var identifier: String { MigrationFile.identifier(version: version, name: name) }
}

/// Where one migration stands, comparing the files with the history.
public enum MigrationState: Sendable, Hashable {
    /// Applied, and its files are unchanged.
    case applied
    /// Not applied yet.
    case pending
    /// Applied, but a file changed since (the reason names which and how).
    case drifted(reason: String)
    /// Applied, but its files are gone.
    case missingFile
}

/// One line of `migrate status`.
public struct MigrationStatusEntry: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var state: MigrationState
    /// The history row, for applied, drifted and missing migrations.
    public var applied: AppliedMigration?

    /// `NNNN_name`.
    public var identifier: String { MigrationFile.identifier(version: version, name: name) }
}

/// Pure planning over "the files" and "the history": what to apply, what to revert, and what is wrong.
/// No I/O: the runner reads the directory and the history table and performs what the planner returns.
public enum MigrationPlanner {
    /// Every migration known to either side, in version order, with its state.
    public static func status(files: [MigrationFile], applied: [AppliedMigration]) -> [MigrationStatusEntry] {
        let filesByVersion = Dictionary(files.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
        let appliedByVersion = Dictionary(applied.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
        let versions = Set(filesByVersion.keys).union(appliedByVersion.keys).sorted()
        return versions.map { version in
            let file = filesByVersion[version]
            guard let row = appliedByVersion[version] else {
                return MigrationStatusEntry(version: version, name: file?.name ?? "", state: .pending, applied: nil)
            }
            guard let file else {
                return MigrationStatusEntry(version: version, name: row.name, state: .missingFile, applied: row)
            }
            return MigrationStatusEntry(version: version, name: row.name, state: drift(file, row).map {
                .drifted(reason: $0)
            } ?? .applied, applied: row)
        }
    }

    /// Why an applied migration no longer matches its file, or `nil` when it does.
    static func drift(_ file: MigrationFile, _ row: AppliedMigration) -> String? {
        if file.name != row.name {
            return "applied as \(row.identifier) but the file is now \(file.identifier)"
        }
        if file.checksum != row.checksum {
            return "\(file.identifier).up.sql changed after it was applied (sha256 \(row.checksum.prefix(12))… "
                + "then, \(file.checksum.prefix(12))… now)"
        }
        if file.downChecksum != row.downChecksum {
            return "\(file.identifier).down.sql changed after the migration was applied"
        }
        return nil
    }

    /// Refuses a history that the files no longer explain: drifted or missing files, or a pending migration
    /// numbered below an applied one.
    /// - Throws: `.checksumDrift`, `.missingFile` or `.outOfOrder`, naming the first offending migration.
    public static func verify(files: [MigrationFile], applied: [AppliedMigration]) throws(MigrationError) {
        let entries = status(files: files, applied: applied)
        for entry in entries {
            switch entry.state {
            case .drifted(let reason):
                throw MigrationError(.checksumDrift,
                    "migration \(entry.identifier) drifted: \(reason); migrations are append-only, so restore the "
                    + "file (git checkout) and put the change in a new migration")
            case .missingFile:
                throw MigrationError(.missingFile,
                    "migration \(entry.identifier) is applied but its files are missing from the migrations "
                    + "directory; restore \(entry.identifier).up.sql and .down.sql (or point --migrations-dir at "
                    + "the right directory)")
            case .applied, .pending:
                continue
            }
        }
        let highestApplied = applied.map(\.version).max() ?? 0
        if let early = entries.first(where: { $0.state == .pending && $0.version < highestApplied }) {
            throw MigrationError(.outOfOrder,
                "migration \(early.identifier) is pending but numbered below applied migration "
                + "\(MigrationFile.identifier(version: highestApplied, name: entries.first { $0.version == highestApplied }?.name ?? "")); "
                + "renumber it above \(highestApplied) (migrations are append-only)")
        }
    }

    /// The migrations `migrate up` applies, in order: every pending one, or those up to and including `target`.
    /// - Throws: as `verify`, and `.invalidTarget` when `target` is not a migration's number or is already below
    ///   the applied history (use `down` for that).
    public static func planUp(files: [MigrationFile], applied: [AppliedMigration], target: Int? = nil)
        throws(MigrationError) -> [MigrationFile]
    {
        try verify(files: files, applied: applied)
        let appliedVersions = Set(applied.map(\.version))
        let highestApplied = appliedVersions.max() ?? 0
        if let target {
            guard files.contains(where: { $0.version == target }) else {
                throw MigrationError(.invalidTarget,
                    "--to \(target) names no migration; pick one of: "
                    + files.map { String($0.version) }.joined(separator: ", "))
            }
            guard target >= highestApplied else {
                throw MigrationError(.invalidTarget,
                    "--to \(target) is below the applied migration \(highestApplied); use `migrate down --steps N` "
                    + "to revert")
            }
        }
        return files
            .filter { !appliedVersions.contains($0.version) && $0.version <= (target ?? Int.max) }
            .sorted { $0.version < $1.version }
    }

    /// The migrations `migrate down --steps N` reverts, newest first.
    /// - Throws: as `verify`, and `.invalidTarget` when `steps` is below 1 or above the number applied.
    public static func planDown(files: [MigrationFile], applied: [AppliedMigration], steps: Int)
        throws(MigrationError) -> [MigrationFile]
    {
        try verify(files: files, applied: applied)
        guard steps >= 1 else {
            throw MigrationError(.invalidTarget, "--steps must be at least 1, got \(steps)")
        }
        guard steps <= applied.count else {
            throw MigrationError(.invalidTarget,
                "--steps \(steps) exceeds the \(applied.count) applied migration(s); pass --steps \(applied.count) "
                + "or fewer")
        }
        let filesByVersion = Dictionary(files.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
        return applied.map(\.version).sorted(by: >).prefix(steps).compactMap { filesByVersion[$0] }
    }
}
