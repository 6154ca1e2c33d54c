public import Postgres

/// The shape of a database's schema as the catalog describes it: schemas, relations, columns, constraints,
/// indexes, functions, view definitions and privileges. Built from `pg_catalog`; system schemas and the
/// migration runner's own `public.migration_history` are left out.
///
/// Used by `doctor` (the live database versus a scratch database built by the migrations) and by the tests that
/// prove every `down` undoes its `up`.
public struct SchemaSnapshot: Sendable, Hashable {
    /// One column's shape.
    public struct Column: Sendable, Hashable {
        /// The type as `format_type` prints it, e.g. `bigint`, `character varying(20)`.
        public var type: String
        public var isNullable: Bool
        /// The default expression, or `identity always` / `identity by default`; `nil` when none.
        public var defaultValue: String?
    }

    public var schemas: Set<String> = []
    /// `schema.name` → `table`, `view`, `materialized view`, `sequence`, `partitioned table`, `foreign table`.
    public var relations: [String: String] = [:]
    /// `schema.relation` → column name → shape.
    public var columns: [String: [String: Column]] = [:]
    /// `schema.relation` → constraint name → definition.
    public var constraints: [String: [String: String]] = [:]
    /// `schema.index` → definition.
    public var indexes: [String: String] = [:]
    /// `schema.name(arguments)` → full definition.
    public var functions: [String: String] = [:]
    /// `schema.view` → definition.
    public var viewDefinitions: [String: String] = [:]
    /// `kind object: privilege to grantee` lines, defaults filled in (so "no ACL" equals the owner's default).
    public var privileges: Set<String> = []

    /// Creates an empty snapshot.
    public init() {}

    private static let userSchemaFilter = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
    private static let notHistory = "NOT (n.nspname = 'public' AND c.relname IN "
        + "('migration_history', 'migration_history_pkey'))"

    /// Reads the snapshot of the database `connection` is connected to.
    public static func read(_ connection: PostgresConnection) throws(PostgresError) -> SchemaSnapshot {
        var snapshot = SchemaSnapshot()
        for row in try connection.query("SELECT n.nspname FROM pg_namespace n WHERE \(userSchemaFilter)") {
            snapshot.schemas.insert(row[0] ?? "")
        }
        let kinds = ["r": "table", "v": "view", "m": "materialized view", "S": "sequence",
                     "p": "partitioned table", "f": "foreign table"]
        for row in try connection.query("""
            SELECT n.nspname || '.' || c.relname, c.relkind::text
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f') AND \(userSchemaFilter) AND \(notHistory)
            """) {
            snapshot.relations[row[0] ?? ""] = kinds[row[1] ?? ""] ?? "relation"
        }
        for row in try connection.query("""
            SELECT n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   CASE a.attidentity WHEN 'a' THEN 'identity always' WHEN 'd' THEN 'identity by default'
                        ELSE pg_get_expr(d.adbin, d.adrelid) END
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
              AND \(userSchemaFilter) AND \(notHistory)
            """) {
            snapshot.columns[row[0] ?? "", default: [:]][row[1] ?? ""] = Column(
                type: row[2] ?? "", isNullable: row[3] != "t", defaultValue: row[4])
        }
        for row in try connection.query("""
            SELECT n.nspname || '.' || c.relname, con.conname, pg_get_constraintdef(con.oid)
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE \(userSchemaFilter) AND \(notHistory)
            """) {
            snapshot.constraints[row[0] ?? "", default: [:]][row[1] ?? ""] = row[2] ?? ""
        }
        for row in try connection.query("""
            SELECT n.nspname || '.' || c.relname, pg_get_indexdef(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('i', 'I') AND \(userSchemaFilter) AND \(notHistory)
            """) {
            snapshot.indexes[row[0] ?? ""] = row[1] ?? ""
        }
        for row in try connection.query("""
            SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                   pg_get_functiondef(p.oid)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prokind IN ('f', 'p') AND \(userSchemaFilter)
            """) {
            snapshot.functions[row[0] ?? ""] = row[1] ?? ""
        }
        for row in try connection.query("""
            SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('v', 'm') AND \(userSchemaFilter)
            """) {
            snapshot.viewDefinitions[row[0] ?? ""] = row[1] ?? ""
        }
        for row in try connection.query("""
            SELECT 'schema ' || n.nspname || ': ' || x.privilege_type || ' to '
                   || CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END
            FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))) x
            WHERE \(userSchemaFilter)
            UNION ALL
            SELECT 'relation ' || n.nspname || '.' || c.relname || ': ' || x.privilege_type || ' to '
                   || CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                 aclexplode(coalesce(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char",
                                                          c.relowner))) x
            WHERE c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f') AND \(userSchemaFilter) AND \(notHistory)
            UNION ALL
            SELECT 'default in ' || coalesce(d.defaclnamespace::regnamespace::text, '*') || ' for '
                   || d.defaclobjtype::text || ': ' || x.privilege_type || ' to '
                   || CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END
            FROM pg_default_acl d, aclexplode(d.defaclacl) x
            """) {
            snapshot.privileges.insert(row[0] ?? "")
        }
        return snapshot
    }

    /// Every fact of the snapshot as one line each, for diffing two snapshots in full (privileges included).
    public var facts: Set<String> {
        var lines = Set(schemas.map { "schema \($0)" })
        for (name, kind) in relations { lines.insert("\(kind) \(name)") }
        for (relation, columns) in columns {
            for (name, column) in columns {
                lines.insert("column \(relation).\(name) \(column.type)"
                    + (column.isNullable ? "" : " NOT NULL") + (column.defaultValue.map { " DEFAULT \($0)" } ?? ""))
            }
        }
        for (relation, constraints) in constraints {
            for (name, definition) in constraints { lines.insert("constraint \(relation).\(name) \(definition)") }
        }
        for (name, definition) in indexes { lines.insert("index \(name) \(definition)") }
        for (name, definition) in functions { lines.insert("function \(name) \(definition)") }
        for (name, definition) in viewDefinitions { lines.insert("view \(name) \(definition)") }
        return lines.union(privileges.map { "privilege \($0)" })
    }

    /// The structural differences between what the migrations produce (`expected`) and this database (`self`),
    /// in plain words, sorted. Privileges are left out: they depend on who owns the objects.
    public func drift(from expected: SchemaSnapshot) -> [String] {
        var lines: [String] = []
        for schema in schemas.subtracting(expected.schemas) {
            lines.append("schema \(schema) exists in the database but no migration creates it")
        }
        for schema in expected.schemas.subtracting(schemas) {
            lines.append("schema \(schema) is missing from the database (a migration creates it)")
        }
        for (name, kind) in relations {
            guard let expectedKind = expected.relations[name] else {
                lines.append("\(kind) \(name) exists in the database but no migration creates it")
                continue
            }
            if kind != expectedKind {
                lines.append("\(name) is a \(kind) in the database, but the migrations make it a \(expectedKind)")
            }
        }
        for (name, kind) in expected.relations where relations[name] == nil {
            lines.append("\(kind) \(name) is missing from the database (a migration creates it)")
        }
        for (relation, expectedColumns) in expected.columns {
            guard let actualColumns = columns[relation], let kind = relations[relation] else { continue }
            for (column, shape) in actualColumns {
                guard let want = expectedColumns[column] else {
                    lines.append("\(kind) \(relation): column \(column) exists in the database but no migration "
                        + "creates it")
                    continue
                }
                if shape.type != want.type {
                    lines.append("\(kind) \(relation): column \(column) has type \(shape.type) in the database, "
                        + "the migrations make it \(want.type)")
                }
                if shape.isNullable != want.isNullable {
                    lines.append("\(kind) \(relation): column \(column) is "
                        + (shape.isNullable ? "nullable" : "NOT NULL") + " in the database, the migrations make it "
                        + (want.isNullable ? "nullable" : "NOT NULL"))
                }
                if shape.defaultValue != want.defaultValue {
                    lines.append("\(kind) \(relation): column \(column) defaults to "
                        + (shape.defaultValue ?? "nothing") + " in the database, the migrations make it "
                        + (want.defaultValue ?? "nothing"))
                }
            }
            for column in expectedColumns.keys where actualColumns[column] == nil {
                lines.append("\(kind) \(relation): column \(column) is missing from the database (a migration "
                    + "creates it)")
            }
        }
        for (relation, expectedConstraints) in expected.constraints where relations[relation] != nil {
            let actual = constraints[relation] ?? [:]
            for (name, definition) in expectedConstraints {
                if let have = actual[name] {
                    if have != definition {
                        lines.append("\(relation): constraint \(name) is \(have) in the database, the migrations "
                            + "make it \(definition)")
                    }
                } else {
                    lines.append("\(relation): constraint \(name) (\(definition)) is missing from the database")
                }
            }
        }
        for (relation, actual) in constraints where expected.relations[relation] != nil {
            for (name, definition) in actual where expected.constraints[relation]?[name] == nil {
                lines.append("\(relation): constraint \(name) (\(definition)) exists in the database but no "
                    + "migration creates it")
            }
        }
        for (name, definition) in indexes where expected.indexes[name] != definition {
            lines.append(expected.indexes[name] == nil
                ? "index \(name) exists in the database but no migration creates it"
                : "index \(name) differs: the database has `\(definition)`, the migrations make "
                    + "`\(expected.indexes[name] ?? "")`")
        }
        for name in expected.indexes.keys where indexes[name] == nil {
            lines.append("index \(name) is missing from the database (a migration creates it)")
        }
        for (name, definition) in functions where expected.functions[name] != definition {
            lines.append(expected.functions[name] == nil
                ? "function \(name) exists in the database but no migration creates it"
                : "function \(name) has a different body in the database than the migrations give it")
        }
        for name in expected.functions.keys where functions[name] == nil {
            lines.append("function \(name) is missing from the database (a migration creates it)")
        }
        for (name, definition) in viewDefinitions
        where expected.viewDefinitions[name] != nil && expected.viewDefinitions[name] != definition {
            lines.append("view \(name) has a different definition in the database than the migrations give it")
        }
        return lines.sorted()
    }
}
