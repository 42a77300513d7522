package deploy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestBootstrapDatabaseThroughTheTarget(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s := testenv.StartSSHD(t)
	key := mustRead(t, s.KeyPath)
	h, err := connectTarget(t.Context(), s, key)
	require.NoError(t, err)
	defer h.Close()
	db := config.Database{Host: pg.Host, Port: pg.Port, Name: "lawsker_prod", User: "lawsker_user", Password: "env:APP_PW",
		SSLMode: "disable", Bootstrap: true, AdminUser: pg.User, AdminPassword: "env:ADMIN_PW"}
	pw := "app pass 'with' \"quotes\" $1; DROP ROLE x; --"
	env := map[string]string{"APP_PW": pw, "ADMIN_PW": pg.Password}
	res := &config.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}

	r, err := BootstrapDatabase(t.Context(), db, res, h.DialTCP)
	require.NoError(t, err)
	assert.Equal(t, BootstrapResult{RoleCreated: true, DatabaseCreated: true}, r)

	// The application role logs in with its password and can create tables.
	login := func(password string) (*pgx.Conn, error) {
		cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=lawsker_user dbname=lawsker_prod sslmode=disable", pg.Host, pg.Port))
		require.NoError(t, err)
		cc.Password = password
		return pgx.ConnectConfig(t.Context(), cc)
	}
	conn, err := login(pw)
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), "CREATE TABLE cases (id serial PRIMARY KEY, title text)")
	require.NoError(t, err)
	conn.Close(context.Background())

	// Idempotent; a rotated password takes effect.
	env["APP_PW"] = "rotated-password-2"
	r, err = BootstrapDatabase(t.Context(), db, res, h.DialTCP)
	require.NoError(t, err)
	assert.Equal(t, BootstrapResult{}, r)
	_, err = login(pw)
	require.Error(t, err, "the old password no longer works")
	conn, err = login("rotated-password-2")
	require.NoError(t, err)
	conn.Close(context.Background())

	// The server logged the statements (log_statement=ddl), and none of them
	// carries a password: only verifiers.
	logs := pg.Log()
	require.Contains(t, logs, `ALTER ROLE "lawsker_user" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:`)
	assert.NotContains(t, logs, "rotated-password-2")
	assert.NotContains(t, logs, "DROP ROLE x")

	// Wrong admin password: a clear error naming where it connected from.
	env["ADMIN_PW"] = "wrong-admin-password"
	_, err = BootstrapDatabase(t.Context(), db, res, h.DialTCP)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("database: connecting to %s:%d/postgres as postgres from the target", pg.Host, pg.Port))
	assert.NotContains(t, err.Error(), "wrong-admin-password")

	env["ADMIN_PW"] = pg.Password
	env["APP_PW"] = "non-ascii-pässword"
	_, err = BootstrapDatabase(t.Context(), db, res, h.DialTCP)
	assert.ErrorContains(t, err, "database.password: use printable ASCII characters only")
}

func TestScramVerifierFormat(t *testing.T) {
	v, err := scramVerifier("secret-password")
	require.NoError(t, err)
	parts := strings.Split(v, "$")
	require.Len(t, parts, 3)
	assert.Equal(t, "SCRAM-SHA-256", parts[0])
	assert.True(t, strings.HasPrefix(parts[1], "4096:"))
	assert.NotContains(t, v, "'")
	other, _ := scramVerifier("secret-password")
	assert.NotEqual(t, v, other, "a fresh salt each time")
}

func TestDeployBootstrapsTheDatabaseAndSizesThePool(t *testing.T) {
	pg := testenv.StartPostgres(t)
	r := newRig(t)
	cfg := r.config(t, fmt.Sprintf(`, "database": {"host": %q, "port": %d, "name": "sample", "user": "sample_app",
	  "password": "env:SAMPLE_DB_PW", "sslmode": "disable", "bootstrap": true, "admin_user": %q, "admin_password": "env:PG_ADMIN",
	  "pool_size_env": "SAMPLE_POOL", "max_overflow_env": "SAMPLE_OVERFLOW"}`, pg.Host, pg.Port, pg.User))
	run := r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1"), func(req *Request) {
		env := map[string]string{"SAMPLE_TOKEN": "token-s3cret-value", "SAMPLE_DB_PW": "sample-db-password", "PG_ADMIN": pg.Password}
		req.Resolver = &config.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	})
	require.NoError(t, run.res.Err())
	s, _ := run.res.Step("bootstrap-database")
	assert.Equal(t, pipelines.Succeeded, s.State)
	out := testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("postgres"), "-tAc", "SELECT datname FROM pg_database WHERE datname = 'sample'")
	assert.Equal(t, "sample\n", out)
	cpus, err := countCPUs(t.Context(), connectRig(t, r))
	require.NoError(t, err)
	size, overflow := PoolSize(cpus)
	_, got := r.get(t, "/api/v1/env?name=SAMPLE_POOL")
	assert.Equal(t, fmt.Sprint(size), got)
	_, got = r.get(t, "/api/v1/env?name=SAMPLE_OVERFLOW")
	assert.Equal(t, fmt.Sprint(overflow), got)
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-3": 4, "0-3,6,8-9": 7} {
		n, ok := parseCPUList(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, n, in)
	}
	for _, bad := range []string{"", "a", "3-1", "0-"} {
		_, ok := parseCPUList(bad)
		assert.False(t, ok, bad)
	}
	s, o := PoolSize(1)
	assert.Equal(t, [2]int{5, 2}, [2]int{s, o})
	s, o = PoolSize(8)
	assert.Equal(t, [2]int{16, 8}, [2]int{s, o})
}
