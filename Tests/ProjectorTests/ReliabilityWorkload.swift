import DemoData
import Postgres
@testable import Projector

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Concurrent writers for the reliability tests: each on its own connection, running random multi-statement
/// transactions over every base table the projection reads, with random pauses inside them so commits land out
/// of outbox-id order.
///
/// The ground truth of what committed is written by the writers themselves: every transaction records, just
/// before its COMMIT, how many outbox entries it appended, in `public.reliability_commits`, in the same
/// transaction. That row exists exactly when the transaction committed, even when the writer never learned the
/// outcome (the server died during COMMIT), so a test can check that the projector applied every committed entry
/// exactly once.
///
/// Writers survive server restarts: a failed connection is replaced (bounded attempts).
final class ReliabilityWorkload: @unchecked Sendable {
    struct Options: Sendable {
        /// Writer threads, each with its own connection.
        var writers = 32
        /// Transactions per writer; `nil` runs until ``stop()``.
        var transactionsPerWriter: Int?
        /// Longest pause inside a transaction, between statements and before COMMIT.
        var maximumPauseMicroseconds: UInt64 = 3_000
        /// Seed of the writers' random choices.
        var seed: UInt64 = 1
    }

    /// The counters of a run.
    struct Outcome: Sendable, Hashable {
        /// Transactions whose COMMIT returned success.
        var commits: Int64
        /// Transactions rolled back (lock timeouts, deadlocks, lost connections).
        var failures: Int64
        /// Transactions that, just before COMMIT, saw a committed outbox entry with a higher id than their own
        /// lowest: out-of-order commits, the trap the feed must survive.
        var inversions: Int64
    }

    private let configuration: PostgresConfiguration
    private let options: Options
    private let lock = ProjectorLock()
    private var stopRequested = false
    private var outcome = Outcome(commits: 0, failures: 0, inversions: 0)
    private var threads: [pthread_t] = []
    private var listingIDs: ClosedRange<Int64> = 1...1
    private var locationIDs: [Int64] = []

    init(configuration: PostgresConfiguration, options: Options = Options()) {
        self.configuration = configuration
        self.options = options
    }

    /// Creates the commit log table (not a base table of the projection, so no trigger captures it).
    static func prepare(_ connection: PostgresConnection) throws {
        try connection.executeScript("""
            CREATE TABLE public.reliability_commits (
                writer  integer NOT NULL,
                entries bigint  NOT NULL
            )
            """)
    }

    /// Outbox entries appended by every committed writer transaction.
    static func committedEntries(_ connection: PostgresConnection) throws -> Int64 {
        try connection.query("SELECT COALESCE(sum(entries), 0)::bigint FROM public.reliability_commits")
            .first?.decode(0, as: Int64.self) ?? -1
    }

    /// Starts the writers.
    func start() throws {
        let connection = try PostgresConnection.connect(configuration)
        defer { connection.close() }
        let range = try connection.query("SELECT min(id), max(id) FROM property.listings")
        let low = try range.first?.decode(0, as: Int64?.self) ?? nil ?? 1
        let high = try range.first?.decode(1, as: Int64?.self) ?? nil ?? 1
        listingIDs = low...max(low, high)
        locationIDs = try connection.query("SELECT id FROM property.locations ORDER BY id")
            .map { try $0.decode(0, as: Int64.self) }
        let threads = (0..<options.writers).map { writer in
            startThread { [self] in self.runWriter(writer) }
        }
        lock.withLock { self.threads = threads }
    }

    /// Asks the writers to finish their transaction in flight and waits for them.
    @discardableResult
    func stop() -> Outcome {
        lock.withLock { stopRequested = true }
        return wait()
    }

    /// Waits for the writers to finish (with `transactionsPerWriter` set, they end by themselves).
    @discardableResult
    func wait() -> Outcome {
        let threads = lock.withLock { () -> [pthread_t] in
            defer { self.threads = [] }
            return self.threads
        }
        for thread in threads { pthread_join(thread, nil) }
        return lock.withLock { outcome }
    }

    /// The counters so far.
    var current: Outcome { lock.withLock { outcome } }

    private var shouldStop: Bool { lock.withLock { stopRequested } }

    private func record(_ update: (inout Outcome) -> Void) { lock.withLock { update(&outcome) } }

    // MARK: One writer

    private func connect() -> PostgresConnection? {
        // Bounded: a restarting server comes back within seconds; a writer gives up after about 30 s.
        for _ in 0..<600 {
            if shouldStop { return nil }
            if let connection = try? PostgresConnection.connect(configuration) {
                // Writers contend on rows while they pause: fail fast and roll back rather than queue.
                if (try? connection.executeScript("SET lock_timeout = '200ms'")) != nil { return connection }
                connection.close()
            }
            usleep(50_000)
        }
        return nil
    }

    private func runWriter(_ writer: Int) {
        var random = SplitMix64(seed: options.seed &* 1_000_003 &+ UInt64(writer) &* 7_919)
        var connection = connect()
        defer { connection?.close() }
        var created: [Int64] = []
        var done = 0
        while !shouldStop {
            if let limit = options.transactionsPerWriter, done >= limit { break }
            guard let live = connection else { return }
            done += 1
            do {
                try live.executeScript("BEGIN")
                for _ in 0..<(1 + Int(random.next() % 3)) {
                    try runStatement(writer, live, &random, &created)
                    usleep(useconds_t(random.next() % (options.maximumPauseMicroseconds + 1)))
                }
                let mine = try live.query("""
                    INSERT INTO public.reliability_commits (writer, entries)
                    SELECT $1, count(*) FROM explore.change_outbox WHERE xid = pg_current_xact_id()
                    RETURNING (SELECT min(id) FROM explore.change_outbox WHERE xid = pg_current_xact_id())
                    """, [Int64(writer)])
                if let lowest = try mine.first?.decode(0, as: Int64?.self) ?? nil {
                    // Entries of other transactions visible here have committed although their ids are higher.
                    // The projector may have pruned some already, so this can miss an inversion, never invent one.
                    let overtaken = try live.query("""
                        SELECT EXISTS (SELECT 1 FROM explore.change_outbox
                                       WHERE id > $1 AND xid <> pg_current_xact_id())
                        """, [lowest]).first?.decode(0, as: Bool.self) ?? false
                    if overtaken { record { $0.inversions += 1 } }
                }
                usleep(useconds_t(random.next() % (options.maximumPauseMicroseconds + 1)))
                try live.executeScript("COMMIT")
                record { $0.commits += 1 }
            } catch {
                // Lock timeouts, deadlocks and unique violations between writers roll back; so does a server
                // going away, after which the connection is replaced.
                record { $0.failures += 1 }
                if (try? live.executeScript("ROLLBACK")) == nil || !live.isConnected {
                    live.close()
                    connection = connect()
                }
            }
        }
    }

    private func pick(_ random: inout SplitMix64) -> Int64 {
        listingIDs.lowerBound + Int64(random.next() % UInt64(listingIDs.count))
    }

    private func pickLocation(_ random: inout SplitMix64) -> Int64 {
        locationIDs.isEmpty ? 1 : locationIDs[Int(random.next() % UInt64(locationIDs.count))]
    }

    private func runStatement(
        _ writer: Int, _ connection: PostgresConnection, _ random: inout SplitMix64, _ created: inout [Int64]
    ) throws {
        let listing = pick(&random)
        switch random.next() % 10 {
        case 0:
            // Titles with characters COPY must escape, so cache bootstraps after restarts decode them.
            let odd = ["tab\there", "line\nbreak", "back\\slash", "Ação · 東京 🏠", "\\N"][Int(random.next() % 5)]
            try connection.query("UPDATE property.listings SET title = $2, updated_at = now() WHERE id = $1",
                                 [listing, "W\(writer) \(random.next() % 1_000) \(odd)"])
        case 1:
            let status = ["draft", "published", "active", "archived", "sold"][Int(random.next() % 5)]
            try connection.query("UPDATE property.listings SET status = $2 WHERE id = $1", [listing, status])
        case 2:
            try connection.query(
                "UPDATE property.existing_properties SET price = price + 1, bedrooms = $2 WHERE listing_id = $1",
                [listing, Int64(random.next() % 6)])
            try connection.query(
                "UPDATE property.developments SET price_to = price_to + 1 WHERE listing_id = $1", [listing])
        case 3:
            try connection.query("DELETE FROM property.media WHERE listing_id = $1", [listing])
            if random.next() % 4 != 0 {
                try connection.query("""
                    INSERT INTO property.media (listing_id, url, is_primary, position) VALUES ($1, $2, true, 0)
                    """, [listing, "https://img.example.com/w\(writer)/\(random.next() % 100_000).jpg"])
            }
        case 4:
            try connection.query("UPDATE property.locations SET area = $2 WHERE id = $1",
                                 [pickLocation(&random), "Area w\(writer) \(random.next())"])
        case 5:
            try connection.query("UPDATE property.listings SET location_id = $2 WHERE id = $1",
                                 [listing, pickLocation(&random)])
        case 6, 7:
            let development = random.next() % 3 == 0
            guard let id = try connection.query("""
                INSERT INTO property.listings (type, status, title, location_id, owner_user_id)
                VALUES ($1, 'published', $2, $3, (SELECT min(id) FROM core.users)) RETURNING id
                """, [development ? "development" : "existing", "New w\(writer)", pickLocation(&random)])
                .first?.decode(0, as: Int64.self)
            else { return }
            if development {
                let from = Int64(100_000 + random.next() % 500_000)
                try connection.query("""
                    INSERT INTO property.developments (listing_id, price_from, price_to) VALUES ($1, $2, $3)
                    """, [id, from, from + Int64(random.next() % 100_000)])
            } else if random.next() % 5 != 0 {
                // Sometimes no type-specific row at all: the listing is shown without a price.
                try connection.query("""
                    INSERT INTO property.existing_properties (listing_id, price, bedrooms, bathrooms)
                    VALUES ($1, $2, 2, 1)
                    """, [id, Int64(50_000 + random.next() % 900_000)])
            }
            created.append(id)
        case 8:
            try connection.query("DELETE FROM property.listings WHERE id = $1", [created.popLast() ?? listing])
        default:
            try connection.query("""
                UPDATE property.listings SET status = 'published', updated_at = now() WHERE id = $1
                """, [listing])
        }
    }
}
