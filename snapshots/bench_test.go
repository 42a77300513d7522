package snapshots

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/target"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// BenchmarkSnapshotAndRestore: a database of about 200 MB, snapshots kept
// in S3 (versitygw on loopback). Our snapshot (pg_dump on the target over
// SSH, streamed and hashed into the bucket) against a raw `pg_dump -Fc -f
// file` on the same machine; our restore (the dump streamed from the bucket
// to the target with its checksum checked, pg_restore --jobs 2 into a fresh
// database, the swap) against a raw `createdb && pg_restore -j2`. Each is
// the median of three alternating rounds (one round is noisy on a shared
// machine). Also the peak heap of this process while dumping and restoring
// (streaming: it does not grow with the dump).
func BenchmarkSnapshotAndRestore(b *testing.B) {
	pg := testenv.StartPostgres(b)
	s := testenv.StartSSHD(b)
	s3 := testenv.StartS3(b)
	s3.CreateBucket(b, "snapshots")
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
	testenv.MustRun(b, psql, pg.DSN("big"), "-c", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) || repeat(md5((g*7)::text), 6) FROM generate_series(1, 800000) g")
	size := testenv.MustRun(b, psql, pg.DSN("big"), "-tAc", "SELECT pg_size_pretty(pg_database_size('big'))")
	b.Logf("database size: %s", strings.TrimSpace(size))
	db := config.Database{Host: pg.Host, Port: pg.Port, Name: "big", User: pg.User, SSLMode: "disable", AdminUser: pg.User}
	store, err := OpenBlobStore(b.Context(), s3URL(s3, "snapshots", "bench"), &S3Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
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
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	conn := "-h " + pg.Host + " -p " + itoa(pg.Port) + " -U " + pg.User
	for b.Loop() {
		var raw, ours, rawRestore, oursRestore []time.Duration
		var m *Manifest
		var dumpPeak, restorePeak uint64
		for round := range 3 {
			raw = append(raw, run(testenv.Bin(b, "pg_dump"), "-Fc", "-h", pg.Host, "-p", itoa(pg.Port), "-U", pg.User, "-d", "big", "-f", filepath.Join(work, "raw.dump")))
			id := fmt.Sprintf("snap_20261126_00000%d_000000", round)
			dumpPeak = max(dumpPeak, testenv.PeakHeap(func() {
				start := time.Now()
				art, info, err := DumpDatabase(b.Context(), h, db, pg.Password, store, id+"/database.dump", nil)
				if err != nil {
					b.Fatal(err)
				}
				ours = append(ours, time.Since(start))
				m = &Manifest{Format: 1, ID: id, Artifacts: map[string]Artifact{"database": art}, Database: info}
			}))
			rawRestore = append(rawRestore, run("sh", "-c", "createdb "+conn+" rawcopy && pg_restore -j2 "+conn+" -d rawcopy "+filepath.Join(work, "raw.dump")))
			run("sh", "-c", "dropdb "+conn+" rawcopy")
			restorePeak = max(restorePeak, testenv.PeakHeap(func() {
				start := time.Now()
				res, err := RestoreDatabase(b.Context(), h, db, pg.Password, store, m, RestoreOptions{WorkDir: work, Jobs: 2})
				if err != nil {
					b.Fatal(err)
				}
				oursRestore = append(oursRestore, time.Since(start))
				run("sh", "-c", "dropdb "+conn+" "+res.Replaced)
			}))
		}
		b.ReportMetric(median(ours).Seconds()/median(raw).Seconds(), "x_raw_pg_dump")
		b.ReportMetric(median(oursRestore).Seconds()/median(rawRestore).Seconds(), "x_raw_pg_restore")
		b.ReportMetric(float64(max(dumpPeak, restorePeak))/(1<<20), "MB_peak_heap")
		b.ReportMetric(float64(m.Artifacts["database"].Size)/(1<<20), "MB_dump")
		b.Logf("pg_dump raw %v, ours %v; pg_restore raw %v, ours %v", raw, ours, rawRestore, oursRestore)
	}
}
