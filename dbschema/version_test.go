package dbschema

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

// The migration version is read from the tool's own table, whichever it
// is; tools that share a table name are told apart by their columns.
func TestReadMigration(t *testing.T) {
	pg := testenv.StartPostgres(t)
	tools := map[string]struct{ ddl, want string }{
		"none":           {``, ""},
		"alembic":        {`CREATE TABLE alembic_version (version_num varchar(32)); INSERT INTO alembic_version VALUES ('ae1027a6acf')`, "alembic ae1027a6acf"},
		"golang-migrate": {`CREATE TABLE schema_migrations (version bigint, dirty boolean); INSERT INTO schema_migrations VALUES (20240115, false)`, "golang-migrate 20240115"},
		"dirty":          {`CREATE TABLE schema_migrations (version bigint, dirty boolean); INSERT INTO schema_migrations VALUES (7, true)`, "golang-migrate 7 (dirty: a migration failed half way)"},
		"rails":          {`CREATE TABLE schema_migrations (version varchar); INSERT INTO schema_migrations VALUES ('20230101000000'), ('20240101000000')`, "rails/dbmate 20240101000000"},
		"goose":          {`CREATE TABLE goose_db_version (id serial, version_id bigint, is_applied boolean); INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (4, true), (5, false)`, "goose 4"},
		"flyway":         {`CREATE TABLE flyway_schema_history (installed_rank int, version varchar, success boolean); INSERT INTO flyway_schema_history VALUES (1, '1', true), (2, '1.1', false)`, "flyway 1.1 (failed)"},
		"django":         {`CREATE TABLE django_migrations (id serial, app varchar, name varchar, applied timestamptz); INSERT INTO django_migrations (app, name) VALUES ('auth', '0001_initial'), ('cases', '0002_status')`, "django cases.0002_status"},
		"prisma":         {`CREATE TABLE _prisma_migrations (migration_name varchar, started_at timestamptz, finished_at timestamptz, rolled_back_at timestamptz); INSERT INTO _prisma_migrations VALUES ('20240101_init', now() - interval '1 day', now(), NULL), ('20240202_cases', now(), NULL, NULL)`, "prisma 20240202_cases (unfinished)"},
		"memos":          {`CREATE TABLE migration_history (version varchar, created_ts bigint); INSERT INTO migration_history VALUES ('0.21.0', 1), ('0.22.0', 2)`, "memos 0.22.0"},
	}
	for name, tt := range tools {
		t.Run(name, func(t *testing.T) {
			testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("postgres"), "-c", "CREATE DATABASE \"m_"+name+"\"")
			if tt.ddl != "" {
				testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("m_"+name), "-v", "ON_ERROR_STOP=1", "-c", tt.ddl)
			}
			conn, err := pgx.Connect(t.Context(), pg.DSN("m_"+name))
			require.NoError(t, err)
			defer conn.Close(t.Context())
			m, err := ReadMigration(t.Context(), conn, "")
			require.NoError(t, err)
			if tt.want == "" {
				assert.Nil(t, m)
				return
			}
			assert.Equal(t, tt.want, m.String())
		})
	}
	conn, err := pgx.Connect(t.Context(), pg.DSN("m_goose"))
	require.NoError(t, err)
	defer conn.Close(t.Context())
	m, err := ReadMigration(t.Context(), conn, "SELECT 'v' || max(version_id) FROM goose_db_version")
	require.NoError(t, err)
	assert.Equal(t, "query v5", m.String(), "database.migration_version_query wins")
	_, err = ReadMigration(t.Context(), conn, "DELETE FROM goose_db_version RETURNING 'x'")
	assert.ErrorContains(t, err, "read-only transaction", "the query runs read-only")
	assert.Equal(t, "3", testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("m_goose"), "-tAc", "SELECT count(*) FROM goose_db_version")[:1])
}
