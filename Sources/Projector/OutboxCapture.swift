public import Postgres

/// The base-table triggers that append every change to `explore.change_outbox`, switched on and off as a whole.
///
/// A deployment fed by Kafka alone switches them off, so its writers stop paying for an outbox no feed reads (the
/// Kafka feed would only prune it). The outbox feed refuses to follow while any of them is off: it would miss
/// every change to that table. Changes committed while capture was off never reach the outbox, so switching back
/// to the outbox feed needs capture on and then a rebuild.
public enum OutboxCapture {
    /// One capture trigger.
    public struct Trigger: Sendable, Hashable {
        /// The table it is on, as PostgreSQL prints it (`property.listings`).
        public var table: String
        /// The trigger's name.
        public var name: String
        /// Whether it fires (anything but `DISABLE TRIGGER`).
        public var isEnabled: Bool
    }

    /// Every capture trigger, ordered by table and name; empty before the outbox migration.
    public static func triggers(on connection: PostgresConnection) throws(ProjectorError) -> [Trigger] {
        do {
            return try connection.query("""
                SELECT t.tgrelid::regclass::text, t.tgname, t.tgenabled <> 'D'
                FROM pg_trigger t
                WHERE t.tgfoid = to_regproc('explore.capture_change') AND NOT t.tgisinternal
                ORDER BY 1, 2
                """).map { row in
                    Trigger(table: row[0] ?? "", name: row[1] ?? "", isEnabled: row[2] == "t")
                }
        } catch {
            throw ProjectorError.database("reading the outbox capture triggers failed", error)
        }
    }

    /// Switches every capture trigger on or off, in one transaction; returns the triggers it changed.
    ///
    /// `ALTER TABLE … ENABLE/DISABLE TRIGGER` briefly takes a lock that waits for the table's writers, and needs
    /// the tables' owner.
    @discardableResult
    public static func set(enabled: Bool, on connection: PostgresConnection) throws(ProjectorError) -> [Trigger] {
        do {
            return try connection.transaction { () throws -> [Trigger] in
                let changed = try triggers(on: connection).filter { $0.isEnabled != enabled }
                for trigger in changed {
                    // The table comes from regclass output, which quotes what needs quoting.
                    try connection.query("""
                        ALTER TABLE \(trigger.table) \(enabled ? "ENABLE" : "DISABLE") TRIGGER \
                        \(try PostgresIdentifier.quoted(trigger.name))
                        """)
                }
                return changed
            }
        } catch {
            throw ProjectorError.database("switching outbox capture \(enabled ? "on" : "off") failed", error)
        }
    }

    /// Throws `.captureDisabled` when a capture trigger is off (or there is none), `.notMigrated` when the
    /// outbox's migration is not applied at all: the outbox feed's check before it follows.
    static func requireEnabled(on connection: PostgresConnection) throws(ProjectorError) {
        let all = try triggers(on: connection)
        let off = Set(all.filter { !$0.isEnabled }.map(\.table)).sorted()
        guard all.isEmpty || !off.isEmpty else { return }
        if all.isEmpty {
            // No trigger because there is no capture function: the schema was never migrated, or migrated down.
            let migrated: Bool
            do {
                migrated = try connection.query("SELECT to_regproc('explore.capture_change') IS NOT NULL").first?[0] == "t"
            } catch {
                throw ProjectorError.database("looking for the outbox capture function failed", error)
            }
            guard migrated else {
                throw ProjectorError(
                    code: .notMigrated,
                    message: "the database lacks the explore schema's outbox (explore.capture_change): "
                        + "run explore-projector migrate up (the projector then builds the projection)")
            }
        }
        let tables = all.isEmpty ? "every table (no capture trigger exists)" : off.joined(separator: ", ")
        throw ProjectorError(
            code: .captureDisabled,
            message: "outbox capture is off for \(tables), so the outbox feed would miss their changes: switch it "
                + "on (explore-projector outbox-capture on), then rebuild the projection")
    }
}
