package snapshots

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// The fingerprint sees the schema, not the data, and a database restored
// from its dump has the same one.
func TestSchemaFingerprint(t *testing.T) {
	r := newDBRig(t)
	r.psql(t, "lawsker_prod", `CREATE EXTENSION IF NOT EXISTS pg_trgm;
		CREATE SCHEMA billing;
		CREATE TYPE billing.state AS ENUM ('open', 'paid');
		CREATE DOMAIN billing.cents AS bigint CHECK (VALUE >= 0);
		CREATE TABLE billing.invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, case_id int REFERENCES cases(id),
			state billing.state NOT NULL DEFAULT 'open', amount billing.cents, note text);
		CREATE INDEX invoices_note_trgm ON billing.invoices USING gin (note gin_trgm_ops);
		CREATE VIEW billing.open AS SELECT id, amount FROM billing.invoices WHERE state = 'open';
		CREATE FUNCTION billing.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, ''); RETURN NEW; END $$;
		CREATE TRIGGER invoices_touch BEFORE INSERT ON billing.invoices FOR EACH ROW EXECUTE FUNCTION billing.touch();`)
	read := func(db string) *dbschema.Schema {
		conn, err := pgx.Connect(t.Context(), r.pg.DSN(db))
		require.NoError(t, err)
		defer conn.Close(t.Context())
		s, err := dbschema.Read(t.Context(), conn)
		require.NoError(t, err)
		return s
	}
	before := read("lawsker_prod")
	fromPsql, err := dbschema.FromCopy(r.psql(t, "lawsker_prod", "COPY ("+dbschema.Query+") TO STDOUT"))
	require.NoError(t, err)
	assert.Equal(t, before, fromPsql, "psql's COPY output (the rehearsal's way) gives the same fingerprint")
	assert.Equal(t, 3, before.Tables, "cases, alembic_version, billing.invoices")
	assert.Len(t, before.Fingerprint, 64)

	r.psql(t, "lawsker_prod", "INSERT INTO cases (title) SELECT 'more' FROM generate_series(1, 100); UPDATE alembic_version SET version_num = 'x'; ANALYZE")
	assert.Equal(t, before.Fingerprint, read("lawsker_prod").Fingerprint, "data, sequences' values and statistics are not the schema")

	m := r.snapshot(t)
	require.NotNil(t, m.Database.Schema)
	assert.Equal(t, before.Fingerprint, m.Database.Schema.Fingerprint, "every dump records the schema")
	r.psql(t, "postgres", "CREATE DATABASE copy")
	testenv.MustRun(t, testenv.Bin(t, "pg_restore"), "--no-owner", "-d", r.pg.DSN("copy"), r.store.(FileStore).Dir+"/"+m.Artifacts[ComponentDatabase].Key)
	assert.Equal(t, before.Fingerprint, read("copy").Fingerprint, "stable across a dump and restore")

	for name, ddl := range map[string]string{
		"a column":         "ALTER TABLE cases ADD COLUMN opened date",
		"a column's type":  "ALTER TABLE billing.invoices ALTER COLUMN note TYPE varchar(200)",
		"a default":        "ALTER TABLE billing.invoices ALTER COLUMN state SET DEFAULT 'paid'",
		"an index":         "CREATE INDEX cases_title ON cases (title)",
		"a constraint":     "ALTER TABLE cases ADD CONSTRAINT title_len CHECK (length(title) < 500)",
		"an enum label":    "ALTER TYPE billing.state ADD VALUE 'void'",
		"a view":           "CREATE OR REPLACE VIEW billing.open AS SELECT id, amount, note FROM billing.invoices WHERE state = 'open'",
		"a function body":  "CREATE OR REPLACE FUNCTION billing.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
		"a trigger":        "DROP TRIGGER invoices_touch ON billing.invoices",
		"a table":          "CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL)",
		"an extension":     "DROP EXTENSION pg_trgm CASCADE",
		"a dropped column": "ALTER TABLE billing.invoices DROP COLUMN note CASCADE",
	} {
		t.Run(name, func(t *testing.T) {
			r.psql(t, "postgres", "DROP DATABASE IF EXISTS changed")
			r.psql(t, "postgres", "CREATE DATABASE changed TEMPLATE copy")
			r.psql(t, "changed", ddl)
			assert.NotEqual(t, before.Fingerprint, read("changed").Fingerprint)
		})
	}
	t.Run("an extension's version", func(t *testing.T) {
		r.psql(t, "postgres", "CREATE DATABASE ext_old")
		r.psql(t, "ext_old", "CREATE EXTENSION pg_trgm VERSION '1.5'")
		r.psql(t, "postgres", "CREATE DATABASE ext_new TEMPLATE ext_old")
		r.psql(t, "ext_new", "ALTER EXTENSION pg_trgm UPDATE")
		assert.NotEqual(t, read("ext_old").Fingerprint, read("ext_new").Fingerprint)
	})
}
