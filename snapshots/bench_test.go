package snapshots

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/target"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// BenchmarkSnapshotAndRestore: a database of about 100 MB. Our snapshot
// (pg_dump on the target over SSH, streamed into a store) against a raw
// `pg_dump -Fc -f file` on the same machine; our restore (copy with
// checksum, pg_restore --jobs 2 into a fresh database, swap) against a raw
// `createdb && pg_restore -j2`. Also the peak heap of this process while
// dumping and restoring (streaming: it does not grow with the dump).
func BenchmarkSnapshotAndRestore(b *testing.B) {
	pg := testenv.StartPostgres(b)
	s := testenv.StartSSHD(b)
	key, err := os.ReadFile(s.KeyPath)
	if err != nil {
		b.Fatal(err)
	}
	h, err := target.Connect(b.Context(), target.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts}, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	psql := testenv.Bin(b, "psql")
	testenv.MustRun(b, psql, pg.DSN("postgres"), "-c", "CREATE DATABASE big")
	testenv.MustRun(b, psql, pg.DSN("big"), "-c", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) || repeat(md5((g*7)::text), 6) FROM generate_series(1, 500000) g")
	size := testenv.MustRun(b, psql, pg.DSN("big"), "-tAc", "SELECT pg_size_pretty(pg_database_size('big'))")
	b.Logf("database size: %s", size)
	db := config.Database{Host: pg.Host, Port: pg.Port, Name: "big", User: pg.User, SSLMode: "disable", AdminUser: pg.User}
	store := FileStore{Dir: b.TempDir()}
	work := b.TempDir()
	env := append(os.Environ(), "PGPASSWORD="+pg.Password)
	run := func(name string, args ...string) time.Duration {
		start := time.Now()
		cmd := exec(name, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, out)
		}
		return time.Since(start)
	}
	for b.Loop() {
		raw := run(testenv.Bin(b, "pg_dump"), "-Fc", "-h", pg.Host, "-p", itoa(pg.Port), "-U", pg.User, "-d", "big", "-f", filepath.Join(work, "raw.dump"))
		var m *Manifest
		var ours time.Duration
		dumpPeak := testenv.PeakHeap(func() {
			start := time.Now()
			art, info, err := DumpDatabase(b.Context(), h, db, pg.Password, store, "snap_20261126_000000_000000/database.dump")
			if err != nil {
				b.Fatal(err)
			}
			ours = time.Since(start)
			m = &Manifest{Format: 1, ID: "snap_20261126_000000_000000", Artifacts: map[string]Artifact{"database": art}, Database: info}
		})
		rawRestore := run("sh", "-c", "createdb -h "+pg.Host+" -p "+itoa(pg.Port)+" -U "+pg.User+" rawcopy && pg_restore -j2 -h "+pg.Host+" -p "+itoa(pg.Port)+" -U "+pg.User+" -d rawcopy "+filepath.Join(work, "raw.dump"))
		run("sh", "-c", "dropdb -h "+pg.Host+" -p "+itoa(pg.Port)+" -U "+pg.User+" rawcopy")
		var oursRestore time.Duration
		restorePeak := testenv.PeakHeap(func() {
			start := time.Now()
			if _, err := RestoreDatabase(b.Context(), h, db, pg.Password, store, m, work, 2); err != nil {
				b.Fatal(err)
			}
			oursRestore = time.Since(start)
		})
		b.ReportMetric(ours.Seconds()/raw.Seconds(), "x_raw_pg_dump")
		b.ReportMetric(oursRestore.Seconds()/rawRestore.Seconds(), "x_raw_pg_restore")
		b.ReportMetric(float64(max(dumpPeak, restorePeak))/(1<<20), "MB_peak_heap")
		b.ReportMetric(float64(m.Artifacts["database"].Size)/(1<<20), "MB_dump")
	}
}
