package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestSnapshotAndDatabaseRollbackCommands(t *testing.T) {
	pg := testenv.StartPostgres(t)
	h := testenv.StartTargetHost(t, "sample")
	v1 := h.Image(t, "./examples/sample/backend", "sample/backend", "v1")
	ports := testenv.ReservePorts(t, 20)
	dir := t.TempDir()
	store := filepath.Join(dir, "snapshots")
	cfg := filepath.Join(dir, "deploy.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"version": 1, "app": "sample",
	  "targets": [{"name": "local", "host": "127.0.0.1",
	    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q},
	    "root": %q, "docker": {"host": %q},
	    "nginx": {"prefix": %q, "config": %q, "access_log": %q, "site_path": %q, "listen": %d, "listen_address": "127.0.0.1"}}],
	  "backend": {"image": "%s/sample/backend", "network": "host",
	    "health_gate": {"interval": "200ms", "deadline": "10s", "consecutive_passes": 2}, "host_port_min": %d, "host_port_max": %d},
	  "database": {"host": "127.0.0.1", "port": %d, "name": "sample", "user": %q, "password": "env:PG_PW", "sslmode": "disable",
	    "admin_user": %q, "admin_password": "env:PG_PW"},
	  "snapshots": {"store": "file://%s", "keep_last": 1}, "rollback": {"watch_window": "1s"}}`,
		h.SSHD.User, h.SSHD.Port, h.SSHD.KeyPath, h.SSHD.KnownHosts, h.Root, h.Docker.Host,
		h.Nginx.Dir, h.Nginx.Conf, h.Nginx.Dir+"/host-access.log", h.SitePath("sample"), h.AppPort, h.Registry.Addr, ports, ports+19,
		pg.Port, pg.User, pg.User, store)), 0o644))
	env := map[string]string{"PG_PW": pg.Password}
	psql := func(sql string) string {
		return testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("sample"), "-v", "ON_ERROR_STOP=1", "-tAc", sql)
	}
	testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("postgres"), "-c", "CREATE DATABASE sample")
	psql("CREATE TABLE cases (id int PRIMARY KEY, title text); INSERT INTO cases SELECT g, 'case ' || g FROM generate_series(1, 100) g")

	r := runIn(t, dir, env, "deploy", "--config", cfg, "--backend-image", v1, "--no-snapshot")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = runIn(t, dir, env, "snapshot", "create", "--config", cfg, "--description", "before the cases migration")
	require.Equal(t, exitOK, r.code, r.stderr)
	id := regexp.MustCompile(`snap_[0-9]{8}_[0-9]{6}_[0-9a-f]{6}`).FindString(r.stdout)
	require.NotEmpty(t, id, r.stdout)
	assert.Contains(t, r.stdout, "backend backend@")
	assert.Contains(t, r.stdout, "database (")

	r = runIn(t, dir, env, "snapshot", "list", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, id)
	assert.Contains(t, r.stdout, `"before the cases migration"`)
	r = runIn(t, dir, env, "snapshot", "show", id, "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `no migration table seen, schema: 1 table, fingerprint [0-9a-f]{12}\n`, r.stdout, "the schema as the catalog says")
	assert.Contains(t, r.stdout, "database  sample on 127.0.0.1:")
	r = runIn(t, dir, env, "snapshot", "check", id, "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "every artifact matches its manifest")

	psql("DELETE FROM cases WHERE id > 10; ALTER TABLE cases ADD COLUMN status text")

	r = runIn(t, dir, env, "rollback", "--config", cfg, "--snapshot", id, "--components", "database", "--dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "rollback plan: database -> "+id+" (release ")
	assert.Contains(t, r.stdout, "risk high: the database's data goes back to")
	assert.Contains(t, r.stdout, "dry run: nothing changed")
	assert.Equal(t, "10\n", psql("SELECT count(*) FROM cases"))
	// The old toolkit's form, by deploy id: the snapshot that holds it.
	rel := regexp.MustCompile(`\(release (\S+?)[,)]`).FindStringSubmatch(r.stdout)
	require.NotNil(t, rel, r.stdout)
	r = runIn(t, dir, env, "--action", "rollback", "--deployment-id", rel[1], "--config", cfg, "--components", "database", "--dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "note: the old toolkit's --action rollback is `lawsker-deploy rollback --deployment "+rel[1])
	assert.Contains(t, r.stderr, "deploy "+rel[1]+": its post-deploy snapshot is "+id)
	assert.Contains(t, r.stdout, "rollback plan: database -> "+id+" (release ")
	r = runIn(t, dir, env, "rollback", "--deployment", "20200101_000000_000000", "--config", cfg, "--dry-run")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "no snapshot holds the release of deploy 20200101_000000_000000")

	r = runIn(t, dir, env, "rollback", "--config", cfg, "--snapshot", id, "--components", "database")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "database: restored from "+id)
	assert.Contains(t, r.stdout, "PASS  health      postgresql")
	assert.Equal(t, "100\n", psql("SELECT count(*) FROM cases"))
	assert.Equal(t, "0\n", psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'cases' AND column_name = 'status'"))

	r = runIn(t, dir, env, "rollback", "--config", cfg, "--snapshot", "snap_20200101_000000_000000")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "no snapshot snap_20200101_000000_000000 in file://"+store+"; recent: "+id)
	r = runIn(t, dir, env, "rollback", "--config", cfg, "--snapshot", id, "--components", "frontend")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "has no frontend (it holds: database, backend, config)")
	r = runIn(t, dir, env, "rollback", "--config", cfg, "--snapshot", id, "--components", "config")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "frontend and config are restored with the backend")

	// A damaged dump: check says so, and a rollback changes nothing.
	dump := filepath.Join(store, id, "database.dump")
	data, err := os.ReadFile(dump)
	require.NoError(t, err)
	data[len(data)/2] ^= 0xff
	require.NoError(t, os.WriteFile(dump, data, 0o600))
	r = runIn(t, dir, env, "snapshot", "check", id, "--config", cfg)
	assert.Equal(t, exitFailed, r.code)
	assert.Contains(t, r.stderr, "checksum mismatch")
	psql("DELETE FROM cases WHERE id > 50")
	r = runIn(t, dir, env, "rollback", "--config", cfg, "--snapshot", id, "--components", "database")
	assert.Equal(t, exitFailed, r.code)
	assert.Contains(t, r.stderr, "nothing was changed: database (snap_")
	assert.Contains(t, r.stderr, "checksum mismatch")
	assert.Equal(t, "50\n", psql("SELECT count(*) FROM cases"))

	// Retention: an old snapshot of no serving release goes; the newest
	// stays; nothing goes on a dry run.
	r = runIn(t, dir, env, "snapshot", "create", "--config", cfg, "--description", "newer")
	require.Equal(t, exitOK, r.code, r.stderr)
	newer := regexp.MustCompile(`snap_[0-9]{8}_[0-9]{6}_[0-9a-f]{6}`).FindString(r.stdout)
	mpath := filepath.Join(store, id, "manifest.json")
	mdata, err := os.ReadFile(mpath)
	require.NoError(t, err)
	mdata = regexp.MustCompile(`"created": "[^"]+"`).ReplaceAll(mdata, []byte(`"created": "2026-01-01T00:00:00Z"`))
	mdata = regexp.MustCompile(`"backend": "[^"]+"`).ReplaceAll(mdata, []byte(`"backend": "`+h.Registry.Addr+`/sample/backend@sha256:`+strings.Repeat("0", 64)+`"`))
	require.NoError(t, os.WriteFile(mpath, mdata, 0o600))
	// A restore killed a moment ago left its fresh copy: with the lock
	// free, no restore is running, so prune drops it (and names it).
	abandoned := "sample_restore_" + time.Now().UTC().Format("20060102150405")
	testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("postgres"), "-c", `CREATE DATABASE "`+abandoned+`"`)
	r = runIn(t, dir, env, "snapshot", "prune", "--dry-run", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "drop   database "+abandoned+" (the copy of a restore that never finished)")
	assert.Contains(t, r.stdout, "delete "+id+" (older than 30 days and not among the newest 1)")
	assert.Contains(t, r.stdout, "keep   "+newer+" (holds the image of the current release)")
	assert.Contains(t, r.stdout, "dry run: nothing deleted")
	r = runIn(t, dir, env, "snapshot", "prune", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "1 snapshot(s) deleted, 1 database(s) dropped")
	assert.Equal(t, "0\n", testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("postgres"), "-tAc", "SELECT count(*) FROM pg_database WHERE datname = '"+abandoned+"'"))
	r = runIn(t, dir, env, "snapshot", "delete", newer, "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runIn(t, dir, env, "snapshot", "show", id, "--config", cfg)
	assert.Equal(t, exitUsage, r.code, "pruned")

	r = runIn(t, dir, env, "snapshot", "delete", id, "--config", cfg)
	assert.Equal(t, exitUsage, r.code, "already pruned")
	r = runIn(t, dir, env, "snapshot", "list", "--config", cfg)
	assert.Contains(t, r.stdout, "no snapshots in file://"+store)
	assert.NotContains(t, allOutput(t, r), pg.Password)
}
