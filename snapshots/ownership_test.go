package snapshots

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/dbschema"
)

// A restored database is the same database: the owner of every object,
// extensions included (one the app's role created as a trusted extension),
// privileges and the database's settings are what they were; the app's
// next migration, which needs to own its extension, still runs.
func TestRestoreKeepsOwnersAndPrivileges(t *testing.T) {
	r := newDBRig(t)
	r.psql(t, "postgres", `CREATE ROLE app LOGIN PASSWORD 'app-pw'; CREATE ROLE reporting;
		ALTER DATABASE lawsker_prod OWNER TO app;
		REVOKE ALL ON DATABASE lawsker_prod FROM PUBLIC;
		GRANT CONNECT ON DATABASE lawsker_prod TO reporting;
		GRANT TEMPORARY ON DATABASE lawsker_prod TO app WITH GRANT OPTION;
		ALTER DATABASE lawsker_prod SET search_path = app, public;
		ALTER DATABASE lawsker_prod SET work_mem = '8MB'`)
	r.psql(t, "lawsker_prod", `ALTER TABLE cases OWNER TO app; ALTER TABLE alembic_version OWNER TO app;
		GRANT SELECT ON cases TO reporting; GRANT USAGE ON SCHEMA public TO reporting`)
	// As the app, the way its migrations run: a trusted extension and a
	// schema of its own.
	conn, err := pgx.Connect(t.Context(), "postgres://app:app-pw@"+r.pg.Host+":"+itoa(r.pg.Port)+"/lawsker_prod?sslmode=disable")
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `CREATE EXTENSION pgcrypto; CREATE SCHEMA app; CREATE TABLE app.keys (id int, k bytea DEFAULT gen_random_bytes(8))`)
	require.NoError(t, err)
	conn.Close(t.Context())

	listing := func(db string) []string {
		c, err := pgx.Connect(t.Context(), r.pg.DSN(db))
		require.NoError(t, err)
		defer c.Close(t.Context())
		l, err := dbschema.Listing(t.Context(), c)
		require.NoError(t, err)
		return l
	}
	before := listing("lawsker_prod")
	m := r.snapshot(t)
	require.NotNil(t, m.Database.Ownership)
	assert.Equal(t, "app", m.Database.Ownership.Owner)
	require.Len(t, m.Database.Ownership.Extensions, 1)
	assert.Equal(t, dbschema.Extension{Name: "pgcrypto", Schema: "public", Version: m.Database.Ownership.Extensions[0].Version, Owner: "app"}, m.Database.Ownership.Extensions[0])
	assert.Contains(t, before, "extension pgcrypto "+m.Database.Ownership.Extensions[0].Version+" app")

	res, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
	require.NoError(t, err)
	assert.Equal(t, before, listing("lawsker_prod"), "owners, privileges, extensions and settings as in the source")
	assert.NotEmpty(t, res.Replaced, "the replaced database is kept")

	// The app's next migration needs to own its extension.
	conn, err = pgx.Connect(t.Context(), "postgres://app:app-pw@"+r.pg.Host+":"+itoa(r.pg.Port)+"/lawsker_prod?sslmode=disable")
	require.NoError(t, err)
	defer conn.Close(t.Context())
	_, err = conn.Exec(t.Context(), `COMMENT ON EXTENSION pgcrypto IS 'ours'; DROP EXTENSION pgcrypto CASCADE`)
	assert.NoError(t, err, "the app's role still owns its extension")
}
