/// Recomputing only the columns that some base tables feed, for listings whose pending changes all come from
/// those tables: a price edit reads two tables by primary key and updates four columns, instead of joining five
/// tables and rewriting the whole row.
///
/// Derived from the defining query itself (``ProjectionDefinition/template``), never written by hand: a table
/// qualifies when it is `LEFT JOIN`ed on the listing id alone and appears nowhere else in the query (neither in
/// the `WHERE` that decides visibility nor in another join), and the columns it covers are the select-list
/// expressions naming it, plus every table those expressions also name, until the set closes.
///
/// ## Why the result is exact
/// The statement updates a stored row only when no change from any *other* table is pending for that listing
/// (the batch's own outbox entries are deleted first, so what remains is committed but not yet applied, or
/// committed meanwhile). The stored columns it keeps are then the definition's current values, so the updated
/// row is the row the full recompute would write, read in one snapshot. Listings with such a pending change are
/// returned (`'f'`) for the full recompute instead. A row the projection lacks is left alone: the covered tables
/// cannot make a listing visible (they are not in the `WHERE`), so the full recompute would not add it either.
public struct ColumnRecompute: Sendable, Hashable {
    /// The base tables whose changes it covers; it reads each of them.
    public let sources: Set<ProjectionDefinition.Source>
    /// The projection columns it sets, in the definition's order.
    public let columns: [String]
    /// One statement, `$1` the listing ids (`bigint[]`): returns `'u'` and the cache columns of each row it
    /// changed, and `'f'` and the id of each listing that needs the full recompute.
    public let statement: String

    /// Whether it leaves every text column alone, so the rows it returns keep the text the cache holds (the
    /// stored columns it keeps are current, see above, and the cache holds what the table holds).
    public var keepsText: Bool { ProjectionRowDecoder.textColumns.isDisjoint(with: columns) }
}

extension ProjectionDefinition {
    /// The column recompute covering changes from `sources`, or `nil` when one of them can change more than
    /// some columns of a visible row (the listings table, a location) or `sources` is empty.
    public static func columnRecompute(covering sources: Set<Source>) -> ColumnRecompute? {
        guard !sources.isEmpty else { return nil }
        return columnRecomputes[sources]
    }

    /// Every column recompute, by each set of sources it covers (two sets can share one: a price edit to
    /// either type table reads both, as the coalesced prices do).
    private static let columnRecomputes: [Set<Source>: ColumnRecompute] = {
        // The restricted form: its joins filter each table by the ids as well, so each is read through its index
        // (see the template's comment) instead of hash-joined whole.
        guard let shape = QueryShape(restrictedQuery(parameter: 1)) else { return [:] }
        let candidates = Source.allCases.filter { shape.eligibleAlias(of: $0) != nil }
        var recomputes: [Set<Source>: ColumnRecompute] = [:]
        for mask in 1..<(1 << candidates.count) {
            let sources = Set(candidates.indices.filter { mask & (1 << $0) != 0 }.map { candidates[$0] })
            if let recompute = shape.columnRecompute(covering: sources) { recomputes[sources] = recompute }
        }
        return recomputes
    }()
}

/// The parts of the defining query a column recompute is built from. The template is ours and laid out one
/// clause per line (a test checks that it parses); anything unexpected makes `init` fail, and the projector
/// then recomputes whole rows only.
struct QueryShape {
    struct Item {
        var expression: String
        var column: String
        var aliases: Set<String>
    }

    struct Join {
        var table: String
        var alias: String
        var line: String
        var conditionAliases: Set<String>
        /// Joined on the listing id alone: `LEFT JOIN`, naming only itself and the base table's `id`.
        var onListingIDOnly: Bool

        /// The base table joined, when it is one the outbox names.
        var source: ProjectionDefinition.Source? {
            ProjectionDefinition.Source.allCases.first { "property.\($0.rawValue)" == table }
        }
    }

    var baseAlias: String
    var items: [Item] = []
    var joins: [Join] = []
    var whereAliases: Set<String> = []

    init?(_ query: String) {
        enum Part { case start, select, from, condition }
        var part = Part.start
        var base: String?
        let lines = query.split(separator: "\n").map { Self.trimmed($0) }
            .filter { !$0.isEmpty && !$0.hasPrefix("--") }
        for line in lines {
            let words = line.split(separator: " ").map(String.init)
            switch (part, words.first) {
            case (.start, "SELECT"):
                part = .select
            case (.select, "FROM"):
                guard words.count == 3 else { return nil }
                base = words[2]
                part = .from
            case (.select, _):
                var text = Substring(line)
                if text.hasSuffix(",") { text = text.dropLast() }
                let expression: String
                let column: String
                if let asRange = text.firstRange(of: " AS ") {
                    expression = Self.trimmed(text[..<asRange.lowerBound])
                    column = Self.trimmed(text[asRange.upperBound...])
                } else {
                    expression = String(text)
                    guard let dot = text.lastIndex(of: ".") else { return nil }
                    column = String(text[text.index(after: dot)...])
                }
                items.append(Item(expression: expression, column: column, aliases: Self.aliases(in: expression)))
            case (.from, "LEFT"), (.from, "JOIN"), (.from, "INNER"):
                guard let on = words.firstIndex(of: "ON"), on >= 2 else { return nil }
                let alias = words[on - 1]
                let condition = words[(on + 1)...].joined(separator: " ")
                let references = Self.references(in: condition)
                joins.append(Join(
                    table: words[on - 2], alias: alias, line: line,
                    conditionAliases: Set(references.map(\.alias)),
                    onListingIDOnly: words.first == "LEFT" && words.dropFirst().first == "JOIN"
                        && references.allSatisfy { $0.alias == alias || ($0.alias == base && $0.column == "id") }))
            case (.from, "WHERE"), (.condition, _):
                whereAliases.formUnion(Self.aliases(in: line))
                part = .condition
            default:
                return nil
            }
        }
        guard let base, part == .condition, items.map(\.column) == ProjectionDefinition.columns else { return nil }
        baseAlias = base
    }

    /// The alias of `source`'s table when a column recompute may read it (see ``ColumnRecompute``).
    func eligibleAlias(of source: ProjectionDefinition.Source) -> String? {
        guard let join = joins.first(where: { $0.source == source }), join.onListingIDOnly,
              !whereAliases.contains(join.alias),
              !joins.contains(where: { $0.alias != join.alias && $0.conditionAliases.contains(join.alias) })
        else { return nil }
        return join.alias
    }

    func columnRecompute(covering sources: Set<ProjectionDefinition.Source>) -> ColumnRecompute? {
        var aliases: Set<String> = []
        for source in sources {
            guard let alias = eligibleAlias(of: source) else { return nil }
            aliases.insert(alias)
        }
        // Close the set: every column naming a read table, every table those columns name.
        var covered: [Item] = []
        while true {
            covered = items.filter { !$0.aliases.isDisjoint(with: aliases) }
            let named = covered.reduce(into: Set<String>()) { $0.formUnion($1.aliases) }
            if named.isSubset(of: aliases) { break }
            for alias in named.subtracting(aliases) {
                guard let source = joins.first(where: { $0.alias == alias })?.source,
                      eligibleAlias(of: source) == alias
                else { return nil }
                aliases.insert(alias)
            }
        }
        guard !covered.isEmpty else { return nil }
        let read = Set(joins.filter { aliases.contains($0.alias) }.compactMap(\.source))
        return ColumnRecompute(sources: read, columns: covered.map(\.column),
                               statement: statement(covered, aliases: aliases, reading: read))
    }

    private func statement(_ covered: [Item], aliases: Set<String>,
                           reading read: Set<ProjectionDefinition.Source>) -> String {
        let base = baseAlias
        let others = ProjectionDefinition.Source.allCases.filter { !read.contains($0) }
        let listingKeyed = others.filter { $0.keyKind == .listingID }.map { "'\($0.rawValue)'" }
        let locationKeyed = others.filter { $0.keyKind == .locationID }.map { "'\($0.rawValue)'" }
        var pending: [String] = []
        if !listingKeyed.isEmpty {
            pending.append("""
                SELECT o.key FROM \(ProjectionDefinition.outboxTable) o
                    JOIN unnest($1::bigint[]) AS k(id) ON o.key = k.id
                    WHERE o.source IN (\(listingKeyed.joined(separator: ", ")))
                """)
        }
        if !locationKeyed.isEmpty {
            // A pending location change may touch any listing (rare: a rename), so it sends them all to the full
            // recompute rather than looking up each stored row's location first.
            pending.append("""
                SELECT k.id AS key FROM unnest($1::bigint[]) AS k(id)
                    WHERE EXISTS (SELECT 1 FROM \(ProjectionDefinition.outboxTable)
                                  WHERE source IN (\(locationKeyed.joined(separator: ", "))))
                """)
        }
        let blocked = pending.isEmpty
            ? "SELECT NULL::bigint AS key WHERE false" : pending.joined(separator: "\nUNION\n")
        let assignments = covered.map { "\($0.column) = \($0.expression)" }.joined(separator: ", ")
        let stored = covered.map { "p.\($0.column)" }.joined(separator: ", ")
        let fresh = covered.map(\.expression).joined(separator: ", ")
        let joinLines = joins.filter { aliases.contains($0.alias) }.map(\.line).joined(separator: "\n")
        let nulls = ProjectionDefinition.columns.dropFirst().map { _ in "NULL" }.joined(separator: ", ")
        return """
            WITH blocked AS (\(blocked)),
            updated AS (
                UPDATE \(ProjectionDefinition.projectionTable) AS p SET \(assignments)
                FROM (SELECT unnest($1::bigint[]) EXCEPT SELECT key FROM blocked) AS \(base)(id)
                \(joinLines)
                WHERE p.id = \(base).id AND (\(stored)) IS DISTINCT FROM (\(fresh))
                RETURNING p.*
            )
            SELECT 'u', \(ProjectionDefinition.cacheColumns("updated")) FROM updated
            UNION ALL
            SELECT 'f', blocked.key, \(nulls) FROM blocked
            """
    }

    static func trimmed(_ text: Substring) -> String {
        String(text.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }

    /// The aliases an SQL fragment qualifies columns with (`d` in `d.price_from`).
    static func aliases(in text: String) -> Set<String> { Set(references(in: text).map(\.alias)) }

    /// Each `alias.column` in an SQL fragment.
    static func references(in text: String) -> [(alias: String, column: String)] {
        var found: [(String, String)] = []
        let characters = Array(text)
        func isWord(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" }
        var i = 0
        while i < characters.count {
            guard isWord(characters[i]), i == 0 || !isWord(characters[i - 1]) && characters[i - 1] != "." else {
                i += 1
                continue
            }
            var end = i
            while end < characters.count && isWord(characters[end]) { end += 1 }
            if end < characters.count && characters[end] == ".", end + 1 < characters.count,
               isWord(characters[end + 1])
            {
                var columnEnd = end + 1
                while columnEnd < characters.count && isWord(characters[columnEnd]) { columnEnd += 1 }
                found.append((String(characters[i..<end]), String(characters[(end + 1)..<columnEnd])))
                i = columnEnd
            } else {
                i = end
            }
        }
        return found
    }
}
