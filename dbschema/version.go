package dbschema

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Migration is what a migration tool's own table says of the database:
// information for people (reports, snapshot show), never a decision; the
// schema's fingerprint decides.
type Migration struct {
	Tool    string `json:"tool,omitempty"`    // "alembic", "goose", ... or "query" (database.migration_version_query)
	Version string `json:"version,omitempty"` // the tool's latest applied version
}

// String reads as `goose 20240115` or "none seen".
func (m *Migration) String() string {
	if m == nil || m.Tool == "" {
		return "no migration table seen"
	}
	return m.Tool + " " + m.Version
}

// tool is one migration tool's table: the table whose presence names it
// (found through the search_path), an optional column that must exist too
// (tools that share a table name differ by their columns), and the query
// of its latest applied version.
type tool struct {
	name, table, column, query string
}

// tools are the migration tables of common tools, the more specific first
// (golang-migrate's and Rails' share schema_migrations: golang-migrate's
// has a dirty column, Ecto's an inserted_at).
var tools = []tool{
	{"alembic", "alembic_version", "", `SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version`},
	{"golang-migrate", "schema_migrations", "dirty", `SELECT version::text || CASE WHEN dirty THEN ' (dirty: a migration failed half way)' ELSE '' END FROM schema_migrations LIMIT 1`},
	{"ecto", "schema_migrations", "inserted_at", `SELECT max(version)::text FROM schema_migrations`},
	{"rails/dbmate", "schema_migrations", "version", `SELECT max(version)::text FROM schema_migrations`},
	{"goose", "goose_db_version", "", `SELECT max(version_id)::text FROM goose_db_version WHERE is_applied`},
	{"flyway", "flyway_schema_history", "", `SELECT version || CASE WHEN success THEN '' ELSE ' (failed)' END FROM flyway_schema_history WHERE version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1`},
	{"liquibase", "databasechangelog", "", `SELECT id FROM databasechangelog ORDER BY orderexecuted DESC LIMIT 1`},
	{"django", "django_migrations", "", `SELECT app || '.' || name FROM django_migrations ORDER BY id DESC LIMIT 1`},
	{"prisma", "_prisma_migrations", "", `SELECT migration_name || CASE WHEN finished_at IS NULL THEN ' (unfinished)' ELSE '' END FROM _prisma_migrations WHERE rolled_back_at IS NULL ORDER BY started_at DESC LIMIT 1`},
	{"sqlx", "_sqlx_migrations", "", `SELECT version::text || CASE WHEN success THEN '' ELSE ' (failed)' END FROM _sqlx_migrations ORDER BY version DESC LIMIT 1`},
	{"knex", "knex_migrations", "", `SELECT name FROM knex_migrations ORDER BY id DESC LIMIT 1`},
	{"diesel", "__diesel_schema_migrations", "", `SELECT max(version) FROM __diesel_schema_migrations`},
	{"typeorm", "typeorm_migrations", "", `SELECT name FROM typeorm_migrations ORDER BY id DESC LIMIT 1`},
	{"sequel", "schema_info", "", `SELECT version::text FROM schema_info LIMIT 1`},
	{"pop", "schema_migration", "", `SELECT max(version) FROM schema_migration`},
	{"xorm", "version", "version", `SELECT max(version)::text FROM version`},
	{"memos", "migration_history", "", `SELECT version FROM migration_history ORDER BY created_ts DESC LIMIT 1`},
}

// ReadMigration names the migration tool whose table conn's database has,
// and its latest version. query, when set (database.migration_version_query),
// is asked instead: it must return one row of one column. No table seen is
// a nil Migration, not an error; a table that cannot be read is an error.
func ReadMigration(ctx context.Context, conn *pgx.Conn, query string) (*Migration, error) {
	if query != "" {
		// Read-only: a query that tries to write is refused by the server.
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("database.migration_version_query: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		var v *string
		if err := tx.QueryRow(ctx, query).Scan(&v); err != nil {
			return nil, fmt.Errorf("database.migration_version_query: %w (it must return one row of one column)", err)
		}
		if v == nil {
			return &Migration{Tool: "query"}, nil
		}
		return &Migration{Tool: "query", Version: *v}, nil
	}
	// One round trip finds which tables (and telling columns) exist.
	var tables, columns []string
	for _, t := range tools {
		tables = append(tables, t.table)
		columns = append(columns, t.column)
	}
	var present []bool
	err := conn.QueryRow(ctx, `SELECT array_agg(to_regclass(t) IS NOT NULL AND (c = '' OR EXISTS (
			SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(t) AND attname = c AND attnum > 0 AND NOT attisdropped)) ORDER BY i)
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(t, c, i)`, tables, columns).Scan(&present)
	if err != nil {
		return nil, fmt.Errorf("looking for migration tables: %w", err)
	}
	for i, t := range tools {
		if i >= len(present) || !present[i] {
			continue
		}
		var v *string
		if err := conn.QueryRow(ctx, t.query).Scan(&v); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("reading %s's version from %s: %w", t.name, t.table, err)
		}
		m := &Migration{Tool: t.name}
		if v != nil {
			m.Version = strings.TrimSpace(*v)
		}
		return m, nil
	}
	return nil, nil
}
