package snapshots

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

type dbRig struct {
	pg    *testenv.Postgres
	host  *remote.Host
	db    config.Database
	store Store
	work  string
}

func newDBRig(t *testing.T) *dbRig {
	pg := testenv.StartPostgres(t)
	s := testenv.StartSSHD(t)
	key, err := os.ReadFile(s.KeyPath)
	require.NoError(t, err)
	h, err := remote.Connect(t.Context(), remote.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts}, 1)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	r := &dbRig{pg: pg, host: h, work: t.TempDir(), store: FileStore{Dir: t.TempDir()},
		db: config.Database{Host: pg.Host, Port: pg.Port, Name: "lawsker_prod", User: pg.User, SSLMode: "disable", AdminUser: pg.User}}
	r.psql(t, "postgres", "CREATE DATABASE lawsker_prod")
	r.psql(t, "lawsker_prod", `CREATE TABLE cases (id serial PRIMARY KEY, title text NOT NULL);
		CREATE TABLE alembic_version (version_num text);
		INSERT INTO alembic_version VALUES ('0041_cases');
		INSERT INTO cases (title) SELECT 'case ' || g FROM generate_series(1, 1000) g;`)
	return r
}

func (r *dbRig) psql(t *testing.T, db, sql string) string {
	return testenv.MustRun(t, testenv.Bin(t, "psql"), r.pg.DSN(db), "-v", "ON_ERROR_STOP=1", "-tAc", sql)
}

func (r *dbRig) snapshot(t *testing.T) *Manifest {
	id := NewID(time.Now())
	art, info, err := DumpDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, id+"/database.dump", DumpOptions{Compression: 1})
	require.NoError(t, err)
	return &Manifest{Format: FormatVersion, ID: id, App: "lawsker", Created: time.Now(), Trigger: "manual",
		Components: []Component{"database"}, Artifacts: map[Component]Artifact{"database": art}, Database: info}
}

// onTarget keeps the rig's snapshots in the target store on the host
// itself (the default store): restores check the dump in place and read it
// from there.
func (r *dbRig) onTarget(t *testing.T) *dbRig {
	r.store = TargetStore{Host: r.host, Dir: t.TempDir() + "/snapshots"}
	return r
}

// storedPath is where a stored key lives on this machine (the target is
// this machine).
func (r *dbRig) storedPath(key string) string {
	switch s := r.store.(type) {
	case FileStore:
		return s.path(key)
	case TargetStore:
		return s.Dir + "/" + key
	}
	panic("no local path for " + r.store.String())
}

func TestSnapshotChangeRollBackCompareEveryRow(t *testing.T) {
	for _, store := range []string{"file", "target"} {
		t.Run(store, func(t *testing.T) {
			r := newDBRig(t)
			if store == "target" {
				r.onTarget(t)
			}
			before := r.psql(t, "lawsker_prod", "SELECT md5(string_agg(id || ':' || title, ',' ORDER BY id)) FROM cases")
			m := r.snapshot(t)
			assert.Equal(t, "0041_cases", m.Database.MigrationVersion)
			assert.Greater(t, m.Artifacts["database"].Size, int64(1000))

			// The release changes data and schema.
			r.psql(t, "lawsker_prod", `ALTER TABLE cases ADD COLUMN status text DEFAULT 'open';
				DELETE FROM cases WHERE id > 500; UPDATE alembic_version SET version_num = '0042_status';`)

			res, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
			require.NoError(t, err)
			assert.Equal(t, before, r.psql(t, "lawsker_prod", "SELECT md5(string_agg(id || ':' || title, ',' ORDER BY id)) FROM cases"), "every row is back")
			assert.Equal(t, "0041_cases\n", r.psql(t, "lawsker_prod", "SELECT version_num FROM alembic_version"))
			assert.Equal(t, "0\n", r.psql(t, "lawsker_prod", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'cases' AND column_name = 'status'"), "the schema is back")
			assert.True(t, strings.HasPrefix(res.Replaced, "lawsker_prod_replaced_"))
			assert.Equal(t, "t\n", r.psql(t, "postgres", "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '"+res.Replaced+"')"), "the replaced database is kept")
			entries, _ := os.ReadDir(r.work)
			assert.Empty(t, entries, "no working copy of the dump is left (none is made for the target store)")
			assert.FileExists(t, r.storedPath(m.Artifacts["database"].Key), "the stored dump stays")
		})
	}
}

func TestCorruptArtifactIsRefusedBeforeAnyChange(t *testing.T) {
	t.Run("newer major version", func(t *testing.T) {
		r := newDBRig(t)
		m := r.snapshot(t)
		dbs := r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
		m.Database.ServerVersion = "99.1 (Debian 99.1-1)"
		_, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
		require.Error(t, err)
		assert.Regexp(t, `is a dump of PostgreSQL 99 and this server runs PostgreSQL \d+: pg_restore cannot load a newer major version's dump; restore it on a PostgreSQL 99 or newer; nothing was changed`, err.Error())
		assert.Equal(t, dbs, r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"), "no database made")
	})
	for _, store := range []string{"file", "target"} {
		t.Run(store, func(t *testing.T) {
			r := newDBRig(t)
			if store == "target" {
				r.onTarget(t)
			}
			m := r.snapshot(t)
			p := r.storedPath(m.Artifacts["database"].Key)
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			data[len(data)/2] ^= 0xff
			require.NoError(t, os.WriteFile(p, data, 0o600))
			r.psql(t, "lawsker_prod", "INSERT INTO cases (title) VALUES ('after the snapshot')")
			dbs := r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")

			_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
			require.ErrorIs(t, err, ErrChecksum)
			assert.Contains(t, err.Error(), "the artifact is damaged, nothing was changed")
			assert.Equal(t, "1001\n", r.psql(t, "lawsker_prod", "SELECT count(*) FROM cases"), "untouched")
			assert.Equal(t, dbs, r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"), "no database left behind")

			// A dump that is gone from the store.
			require.NoError(t, os.Remove(p))
			_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
			require.ErrorIs(t, err, ErrNotFound)
			assert.Equal(t, dbs, r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"), "no database left behind")
		})
	}
}

func TestKilledRestoreLeavesTheOriginalIntact(t *testing.T) {
	r := newDBRig(t)
	r.psql(t, "lawsker_prod", "INSERT INTO cases (title) SELECT repeat('x', 2000) FROM generate_series(1, 20000)")
	m := r.snapshot(t)
	r.psql(t, "lawsker_prod", "DELETE FROM cases WHERE id > 10")
	ctx, cancel := context.WithCancel(t.Context())
	seen := make(chan bool, 1)
	go func() {
		// Cancel once pg_restore is writing into the fresh database.
		found := false
		for i := 0; i < 400 && !found; i++ {
			found = r.psql(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore' AND datname LIKE 'lawsker_prod_restore_%'") != "0\n"
			if !found {
				time.Sleep(10 * time.Millisecond)
			}
		}
		cancel()
		seen <- found
	}()
	_, err := RestoreDatabase(ctx, r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
	require.Error(t, err)
	require.True(t, <-seen, "the restore was cancelled while pg_restore ran")
	assert.Equal(t, "10\n", r.psql(t, "lawsker_prod", "SELECT count(*) FROM cases"), "the original is intact")
	assert.Equal(t, "t\n", r.psql(t, "postgres", "SELECT datallowconn FROM pg_database WHERE datname = 'lawsker_prod'"), "and accepts connections")
	// The half-restored fresh database is dropped (bounded wait: the drop
	// runs as the restore returns).
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(r.psql(t, "postgres", "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database"), "_restore_") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	assert.NotContains(t, r.psql(t, "postgres", "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database"), "_restore_")
}

func TestDumpFromAnotherDatabaseIsRefused(t *testing.T) {
	r := newDBRig(t)
	m := r.snapshot(t)
	other := r.db
	other.Name = "lawsker_staging"
	_, err := RestoreDatabase(t.Context(), r.host, other, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
	assert.EqualError(t, err, `snapshot `+m.ID+` holds a dump of database "lawsker_prod", not "lawsker_staging": nothing was changed`)
}

func TestManifestFormat(t *testing.T) {
	_, err := ParseManifest([]byte(`{"format": 2, "id": "snap_20261126_040000_abcdef"}`))
	assert.EqualError(t, err, "snapshot snap_20261126_040000_abcdef has manifest format 2, newer than this lawsker-deploy reads (1): upgrade lawsker-deploy")
	_, err = ParseManifest([]byte(`{"format": 1, "id": "../../etc"}`))
	assert.ErrorContains(t, err, "not a lawsker-deploy snapshot manifest")
	assert.True(t, ValidID(NewID(time.Now())))
}

func TestEncryptedRoundTripAndWrongIdentity(t *testing.T) {
	r := newDBRig(t)
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	other, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	before := r.psql(t, "lawsker_prod", "SELECT md5(string_agg(id || ':' || title, ',' ORDER BY id)) FROM cases")
	sid := NewID(time.Now())
	art, info, err := DumpDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, sid+"/database.dump", DumpOptions{Compression: 1, Recipient: id.Recipient()})
	require.NoError(t, err)
	assert.Equal(t, EncryptionAge, art.Encryption)
	assert.Equal(t, id.Recipient().String(), art.Recipient)
	stored, err := os.ReadFile(r.store.(FileStore).path(art.Key))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(stored), "age-encryption.org/v1\n"), "stored encrypted")
	assert.NotContains(t, string(stored), "case 1000", "no clear text at rest")
	m := &Manifest{Format: FormatVersion, ID: sid, Created: time.Now(), Components: []Component{"database"}, Artifacts: map[Component]Artifact{"database": art}, Database: info}
	require.NoError(t, Check(t.Context(), r.store, m), "integrity is checked without the key")

	r.psql(t, "lawsker_prod", "DELETE FROM cases WHERE id > 10")
	_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
	assert.ErrorContains(t, err, "set snapshots.age_identity")
	_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2, Identity: other})
	assert.ErrorContains(t, err, "snapshots.age_identity is not its identity; nothing was changed")
	assert.Equal(t, "10\n", r.psql(t, "lawsker_prod", "SELECT count(*) FROM cases"), "nothing changed")

	// Damaged ciphertext: a checksum mismatch, nothing changed.
	bad := append([]byte(nil), stored...)
	bad[len(bad)/2] ^= 0xff
	require.NoError(t, os.WriteFile(r.store.(FileStore).path(art.Key), bad, 0o600))
	_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2, Identity: id})
	assert.ErrorIs(t, err, ErrChecksum)
	assert.Equal(t, "10\n", r.psql(t, "lawsker_prod", "SELECT count(*) FROM cases"))
	require.NoError(t, os.WriteFile(r.store.(FileStore).path(art.Key), stored, 0o600))

	_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2, Identity: id})
	require.NoError(t, err)
	assert.Equal(t, before, r.psql(t, "lawsker_prod", "SELECT md5(string_agg(id || ':' || title, ',' ORDER BY id)) FROM cases"))
}

func TestIdentityFromConfig(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	res := &config.Resolver{LookupEnv: func(k string) (string, bool) {
		return map[string]string{"AGE_ID": id.String() + "\n", "NOT_AGE": "AGE-SECRET-KEY-1notakeyatall"}[k], true
	}}
	cfg := &config.Config{}
	got, err := Identity(cfg, res)
	require.NoError(t, err)
	assert.Nil(t, got)
	cfg.Snapshots.AgeIdentity = config.SecretRef("env:AGE_ID")
	got, err = Identity(cfg, res)
	require.NoError(t, err)
	assert.Equal(t, id.String(), got.(*age.X25519Identity).String())
	cfg.Snapshots.AgeIdentity = config.SecretRef("env:NOT_AGE")
	_, err = Identity(cfg, res)
	assert.EqualError(t, err, "snapshots.age_identity: not an age X25519 identity (AGE-SECRET-KEY-1...)")
}

func TestPruneReplacedDatabases(t *testing.T) {
	r := newDBRig(t)
	m := r.snapshot(t)
	res, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, r.store, m, RestoreOptions{WorkDir: r.work, Jobs: 2})
	require.NoError(t, err)
	r.psql(t, "postgres", `CREATE DATABASE "lawsker_prod_replaced_notadate"`)
	r.psql(t, "postgres", `CREATE DATABASE "lawsker_prod_restore_20200101000000"`)   // a restore killed long ago
	r.psql(t, "postgres", `CREATE DATABASE "lawsker_prodx_replaced_20200101000000"`) // another app's
	list := func() string {
		return r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'lawsker%'")
	}
	now := time.Now()
	kept, err := PruneDatabases(t.Context(), r.host, r.db, r.pg.Password, now.Add(-24*time.Hour), now.Add(-time.Hour), false)
	require.NoError(t, err)
	assert.Equal(t, []string{"lawsker_prod_restore_20200101000000"}, kept, "the replaced one is younger than retention")
	dry, err := PruneDatabases(t.Context(), r.host, r.db, r.pg.Password, now.Add(time.Minute), now.Add(-time.Hour), true)
	require.NoError(t, err)
	assert.Equal(t, []string{res.Replaced}, dry)
	assert.Contains(t, list(), res.Replaced, "a dry run drops nothing")
	dropped, err := PruneDatabases(t.Context(), r.host, r.db, r.pg.Password, now.Add(time.Minute), now.Add(-time.Hour), false)
	require.NoError(t, err)
	assert.Equal(t, []string{res.Replaced}, dropped)
	assert.Equal(t, "lawsker_prod,lawsker_prod_replaced_notadate,lawsker_prodx_replaced_20200101000000\n", list())
}

// signerTo hands out a URL the target cannot fetch (a closed port), as a
// store the target has no route to would.
type signerTo struct {
	*BlobStore
	url string
}

func (s signerTo) SignedURL(context.Context, string, time.Duration) (string, error) {
	return s.url, nil
}

func TestRestoreFromS3(t *testing.T) {
	r := newDBRig(t)
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "snapshots")
	bucket, err := OpenBlobStore(t.Context(), s3URL(s3, "snapshots", "app"), &S3Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey})
	require.NoError(t, err)
	t.Cleanup(func() { bucket.Close() })
	r.store = bucket
	count := func() string { return r.psql(t, "lawsker_prod", "SELECT count(*) FROM cases") }
	dbs := func() string {
		return r.psql(t, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname NOT LIKE '%_replaced_%'")
	}
	m := r.snapshot(t)
	opts := RestoreOptions{WorkDir: r.work, Jobs: 2}

	t.Run("the target fetches the dump itself", func(t *testing.T) {
		r.psql(t, "lawsker_prod", "DELETE FROM cases WHERE id > 10")
		res, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, bucket, m, opts)
		require.NoError(t, err)
		assert.Equal(t, TransferFetched, res.Transfer)
		assert.Equal(t, "1000\n", count())
		entries, _ := os.ReadDir(r.work)
		assert.Empty(t, entries, "the fetched copy is removed")
	})

	t.Run("a target that cannot reach the store gets it through this machine", func(t *testing.T) {
		url := "http://127.0.0.1:" + itoa(testenv.FreePort(t)) + "/snapshots/app/x?X-Amz-Signature=s3cr3t"
		r.psql(t, "lawsker_prod", "DELETE FROM cases WHERE id > 10")
		res, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, signerTo{bucket, url}, m, opts)
		require.NoError(t, err)
		assert.Equal(t, TransferCopied, res.Transfer)
		assert.Equal(t, "1000\n", count())
	})

	t.Run("a damaged object is refused, whoever fetches it", func(t *testing.T) {
		p := filepath.Join(s3.Dir, "snapshots", "app", m.Artifacts["database"].Key)
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.WriteFile(p, data, 0o600) })
		bad := slices.Clone(data)
		bad[len(bad)/2] ^= 0xff
		require.NoError(t, os.WriteFile(p, bad, 0o600))
		r.psql(t, "lawsker_prod", "DELETE FROM cases WHERE id > 10")
		before := dbs()
		for _, st := range []Store{bucket, signerTo{bucket, "http://127.0.0.1:" + itoa(testenv.FreePort(t)) + "/x"}} {
			_, err = RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, st, m, opts)
			require.ErrorIs(t, err, ErrChecksum)
			assert.Equal(t, "10\n", count(), "untouched")
			assert.Equal(t, before, dbs(), "no database left behind")
			entries, _ := os.ReadDir(r.work)
			assert.Empty(t, entries, "no copy left behind")
		}
	})

	t.Run("a missing object", func(t *testing.T) {
		gone := *m
		gone.Artifacts = map[Component]Artifact{"database": {Key: "snap_19990101_000000_000000/database.dump", Size: 1, SHA256: "00"}}
		_, err := RestoreDatabase(t.Context(), r.host, r.db, r.pg.Password, bucket, &gone, opts)
		require.ErrorIs(t, err, ErrNotFound)
		assert.Equal(t, "10\n", count(), "untouched")
	})
}

func TestSignedURLNeverInErrors(t *testing.T) {
	url := "http://127.0.0.1:9/b/k?X-Amz-Credential=AKIA&X-Amz-Signature=deadbeef"
	msg := "curl: (7) Failed to connect to " + url + " and X-Amz-Credential=AKIA&X-Amz-Signature=deadbeef"
	got := redact(msg, url)
	assert.NotContains(t, got, "deadbeef")
	assert.NotContains(t, got, "AKIA")
	assert.Contains(t, got, "<signed URL>")
}
