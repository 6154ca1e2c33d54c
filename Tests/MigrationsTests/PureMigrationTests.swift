import Foundation
@testable import Migrations
import Testing

@Suite("SHA-256")
struct SHA256Tests {
    @Test("known vectors: empty, abc, two-block message, a million a's")
    func knownVectors() {
        #expect(SHA256.hexDigest([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hexDigest("abc".utf8) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hexDigest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hexDigest([UInt8](repeating: 0x61, count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("incremental updates equal one-shot hashing at every split point")
    func incremental() {
        let message = Array((0..<200).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let whole = SHA256.hash(message)
        for split in [0, 1, 55, 56, 63, 64, 65, 128, 199, 200] {
            var hasher = SHA256()
            hasher.update(message[..<split])
            hasher.update(message[split...])
            #expect(hasher.finalize() == whole, "split at \(split)")
        }
    }

    @Test("migration checksums equal sha256sum of the files")
    func matchesSha256sum() throws {
        let files = try MigrationFile.load(directory: MigrationFixtures.sqlDirectory)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum"] + files.map { "\(MigrationFixtures.sqlDirectory)/\($0.identifier).up.sql" }
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let sums = output.split(separator: "\n").map { String($0.prefix(64)) }
        #expect(sums == files.map(\.checksum))
    }
}

@Suite("Migration files")
struct MigrationFileTests {
    @Test("file names parse into version and name; anything else is rejected")
    func parsing() {
        #expect(MigrationFile.parseFileName("0001_core.up.sql") == .up(version: 1, name: "core"))
        #expect(MigrationFile.parseFileName("0042_add_x_2.down.sql") == .down(version: 42, name: "add_x_2"))
        for bad in ["001_core.up.sql", "0001-core.up.sql", "0001_Core.up.sql", "0001_.up.sql", "0001_core.sql",
                    "0000_zero.up.sql", "abcd_core.up.sql", "0001_core.up.sql.bak", "0001_co re.up.sql"] {
            #expect(MigrationFile.parseFileName(bad) == nil, "\(bad)")
        }
    }

    @Test("pairs up and down files in version order and ignores non-SQL files")
    func pairing() throws {
        let migrations = try MigrationFile.pair([
            "0002_b.up.sql": "B", "0002_b.down.sql": "b", "0001_a.up.sql": "A", "0001_a.down.sql": "a",
            "README.md": "docs",
        ])
        #expect(migrations.map(\.identifier) == ["0001_a", "0002_b"])
        #expect(migrations.map(\.upSQL) == ["A", "B"])
        #expect(migrations.map(\.downSQL) == ["a", "b"])
    }

    @Test("unpaired, duplicated, mismatched and misnamed files are refused")
    func invalidSets() {
        let cases: [[String: String]] = [
            ["0001_a.up.sql": ""],
            ["0001_a.down.sql": ""],
            ["0001_a.up.sql": "", "0001_a.down.sql": "", "0001_b.up.sql": "", "0001_b.down.sql": ""],
            ["0001_a.up.sql": "", "0001_b.down.sql": ""],
            ["0001_a.up.sql": "", "0001_a.down.sql": "", "notes.sql": ""],
        ]
        for files in cases {
            #expect(throws: MigrationError.self, "\(files.keys.sorted())") { try MigrationFile.pair(files) }
        }
    }

    @Test("a missing directory gives a clear error")
    func missingDirectory() {
        do {
            _ = try MigrationFile.load(directory: "/nonexistent/sql")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .directoryNotFound)
            #expect(error.message.contains("--migrations-dir"))
        }
    }

    @Test("the repository's migrations are numbered 1...n without gaps and every file pairs up")
    func repositoryMigrations() throws {
        let files = try MigrationFile.load(directory: MigrationFixtures.sqlDirectory)
        #expect(files.map(\.version) == Array(1...files.count))
        #expect(files.count >= 9)
    }
}

@Suite("Migration planner")
struct MigrationPlannerTests {
    static func files(_ count: Int) -> [MigrationFile] {
        (1...count).map { MigrationFile(version: $0, name: "m\($0)", upSQL: "up \($0)", downSQL: "down \($0)") }
    }

    static func applied(_ file: MigrationFile) -> AppliedMigration {
        AppliedMigration(version: file.version, name: file.name, checksum: file.checksum,
                         downChecksum: file.downChecksum)
    }

    @Test("up plans exactly the pending migrations up to the target, in order (all prefixes and targets)")
    func upPlans() throws {
        let all = Self.files(6)
        for appliedCount in 0...6 {
            let history = all.prefix(appliedCount).map(Self.applied)
            let plan = try MigrationPlanner.planUp(files: all, applied: history)
            #expect(plan.map(\.version) == all.map(\.version).filter { $0 > appliedCount })
            for target in 1...6 {
                if target < appliedCount {
                    #expect(throws: MigrationError.self) {
                        try MigrationPlanner.planUp(files: all, applied: history, target: target)
                    }
                } else {
                    let partial = try MigrationPlanner.planUp(files: all, applied: history, target: target)
                    #expect(partial.map(\.version) == Array(appliedCount..<target).map { $0 + 1 })
                }
            }
        }
    }

    @Test("down plans the newest applied migrations, newest first; bad step counts are refused")
    func downPlans() throws {
        let all = Self.files(5)
        let history = all.prefix(4).map(Self.applied)
        for steps in 1...4 {
            let plan = try MigrationPlanner.planDown(files: all, applied: history, steps: steps)
            #expect(plan.map(\.version) == Array((5 - steps)...4).reversed())
        }
        for steps in [0, -1, 5] {
            #expect(throws: MigrationError.self) {
                try MigrationPlanner.planDown(files: all, applied: history, steps: steps)
            }
        }
    }

    @Test("a changed up or down file, a renamed file and a missing file are drift, and are refused")
    func drift() {
        let all = Self.files(3)
        let history = all.map(Self.applied)
        var changedUp = all
        changedUp[1].upSQL += " "
        var changedDown = all
        changedDown[2].downSQL = "other"
        var renamed = all
        renamed[0].name = "renamed"
        let cases: [([MigrationFile], MigrationError.Code)] = [
            (changedUp, .checksumDrift), (changedDown, .checksumDrift), (renamed, .checksumDrift),
            (Array(all.dropFirst()), .missingFile),
        ]
        for (files, code) in cases {
            do {
                _ = try MigrationPlanner.planUp(files: files, applied: history)
                Issue.record("expected \(code)")
            } catch {
                #expect(error.code == code)
            }
            #expect(throws: MigrationError.self) { try MigrationPlanner.planDown(files: files, applied: history, steps: 1) }
        }
        let states = MigrationPlanner.status(files: changedUp, applied: history).map(\.state)
        #expect(states[0] == .applied)
        if case .drifted = states[1] {} else { Issue.record("expected drift, got \(states[1])") }
    }

    @Test("a pending migration numbered below an applied one is refused")
    func outOfOrder() {
        let all = Self.files(3)
        let history = [Self.applied(all[0]), Self.applied(all[2])]
        do {
            _ = try MigrationPlanner.planUp(files: all, applied: history)
            Issue.record("expected outOfOrder")
        } catch {
            #expect(error.code == .outOfOrder)
        }
    }

    @Test("status against a random history matches a direct reference classification")
    func statusProperty() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let all = Self.files(8)
            var files: [MigrationFile] = []
            var history: [AppliedMigration] = []
            var expected: [Int: String] = [:]
            for file in all {
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    files.append(file); expected[file.version] = "pending"
                case 1:
                    files.append(file); history.append(Self.applied(file)); expected[file.version] = "applied"
                case 2:
                    var changed = file
                    changed.upSQL += "!"
                    files.append(changed); history.append(Self.applied(file)); expected[file.version] = "drifted"
                default:
                    history.append(Self.applied(file)); expected[file.version] = "missing"
                }
            }
            let got = MigrationPlanner.status(files: files, applied: history)
            #expect(got.map(\.version) == all.map(\.version))
            for entry in got {
                let word: String
                switch entry.state {
                case .applied: word = "applied"
                case .pending: word = "pending"
                case .drifted: word = "drifted"
                case .missingFile: word = "missing"
                }
                #expect(word == expected[entry.version])
            }
        }
    }

    @Test("COPY text rows escape backslash, tab, newline and carriage return, and write NULL as \\N")
    func copyEscaping() {
        var rows = CopyRows()
        rows.field("a\tb\\c\nd\re")
        rows.field(-42)
        rows.field("plain é")
        rows.lastNull()
        #expect(String(decoding: rows.bytes, as: UTF8.self) == "a\\tb\\\\c\\nd\\re\t-42\tplain é\t\\N\n")
        var numbers = CopyRows()
        for value in [Int64.min + 1, -1, 0, 7, 1_000_000, Int64.max] { numbers.last(value) }
        #expect(String(decoding: numbers.bytes, as: UTF8.self)
            == [Int64.min + 1, -1, 0, 7, 1_000_000, Int64.max].map { "\($0)\n" }.joined())
    }

    @Test("COPY timestamps match a reference calendar for many instants")
    func copyTimestamps() {
        #expect(CopyRows.timestamp(microseconds: 0) == "1970-01-01 00:00:00.000000+00")
        #expect(CopyRows.timestamp(microseconds: 1_767_225_600_000_000) == "2026-01-01 00:00:00.000000+00")
        #expect(CopyRows.timestamp(microseconds: 951_782_400_000_001) == "2000-02-29 00:00:00.000001+00")
        #expect(CopyRows.timestamp(microseconds: -1) == "1969-12-31 23:59:59.999999+00")
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        for _ in 0..<2_000 {
            let seconds = Int64.random(in: -2_000_000_000...4_000_000_000)
            let micros = Int64.random(in: 0..<1_000_000)
            let text = CopyRows.timestamp(microseconds: seconds * 1_000_000 + micros)
            let reference = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            #expect(text.hasPrefix(reference), "\(seconds)")
        }
    }
}

enum MigrationFixtures {
    /// The repository's sql/ directory, found from this file's path.
    static let sqlDirectory: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/") + "/sql"
    }()
}
