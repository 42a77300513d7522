package snapshots

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// BenchmarkSnapshotAndRestore: a database of about 200 MB, snapshots kept
// in S3 (versitygw on loopback).
//
//   - x_raw_pg_dump: our snapshot (pg_dump on the target over SSH at
//     snapshots.dump_compression's default level, streamed and hashed into
//     the bucket) against a raw `pg_dump -Fc -f file` (pg_dump's default
//     level, 6) on the same machine; x_raw_pg_dump_same_level: ours at
//     level 6 too (what the transport costs); _target_store: the default
//     store (on the target host, over SFTP).
//   - x_raw_pg_restore: our restore from the bucket (the target fetches
//     the dump through a signed URL, pg_restore --jobs 2 into a fresh
//     database while the checksum is computed, the swap) against a raw
//     `createdb && pg_restore -j2` of the same archive (a snapshot's dump
//     as a local file); _target_store: from the default store (the dump
//     read where it is); _of_level6_dump: ours against the raw restore of
//     the raw dump.
//
// Each figure is a ratio of medians over five rounds (nine for restores,
// which vary more from run to run); every run starts from a checkpointed,
// synced PostgreSQL and the order of the runs turns every round (one run
// is noisy on a shared machine). Also the peak heap of this process while
// dumping and restoring (streaming: it does not grow with the dump).
func BenchmarkSnapshotAndRestore(b *testing.B) {
	pg := testenv.StartPostgres(b)
	s := testenv.StartSSHD(b)
	s3 := testenv.StartS3(b)
	s3.CreateBucket(b, "snapshots")
	key, err := os.ReadFile(s.KeyPath)
	if err != nil {
		b.Fatal(err)
	}
	h, err := remote.Connect(b.Context(), remote.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts}, 1)
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
	onTarget := TargetStore{Host: h, Dir: filepath.Join(work, "snapshots")}
	defaultLevel := config.Defaults[config.Snapshots]().DumpCompression
	b.Logf("dump compression: %d (snapshots.dump_compression's default; a raw pg_dump -Fc uses 6)", defaultLevel)
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
	// Every timed run starts from the same state: PostgreSQL checkpointed
	// and the page cache written back (what the previous run left dirty is
	// not this one's cost), and the order of the runs turns every round.
	settle := func() {
		run(psql, pg.DSN("postgres"), "-c", "CHECKPOINT")
		run("sync")
	}
	rotate := func(round int, fns ...func()) {
		for i := range fns {
			settle()
			fns[(i+round)%len(fns)]()
		}
	}
	for b.Loop() {
		var raw, ours, oursLevel6, oursTarget, rawRestoreDefault, rawRestore, oursRestore, oursRestoreTarget []time.Duration
		var m, mt *Manifest
		var dumpPeak, restorePeak uint64
		for round := range 5 {
			id := fmt.Sprintf("snap_20261126_00000%d_000000", round)
			dump := func(st Store, level int, into *[]time.Duration) (*Manifest, uint64) {
				key := fmt.Sprintf("%s/database-%d.dump", id, level)
				var mf *Manifest
				peak := testenv.PeakHeap(func() {
					start := time.Now()
					art, info, err := DumpDatabase(b.Context(), h, db, pg.Password, st, key, DumpOptions{Compression: level})
					if err != nil {
						b.Fatal(err)
					}
					*into = append(*into, time.Since(start))
					mf = &Manifest{Format: 1, ID: id, Artifacts: map[Component]Artifact{"database": art}, Database: info}
				})
				return mf, peak
			}
			rotate(round,
				func() {
					raw = append(raw, run(testenv.Bin(b, "pg_dump"), "-Fc", "-h", pg.Host, "-p", itoa(pg.Port), "-U", pg.User, "-d", "big", "-f", filepath.Join(work, "raw.dump")))
				},
				func() {
					var peak uint64
					m, peak = dump(store, defaultLevel, &ours)
					dumpPeak = max(dumpPeak, peak)
				},
				func() { dump(store, 6, &oursLevel6) },
				func() { mt, _ = dump(onTarget, defaultLevel, &oursTarget) })
		}
		// A restore varies more from run to run than a dump: more rounds.
		for round := range 9 {
			restore := func(st Store, mf *Manifest, into *[]time.Duration) uint64 {
				return testenv.PeakHeap(func() {
					start := time.Now()
					res, err := RestoreDatabase(b.Context(), h, db, pg.Password, st, mf, RestoreOptions{WorkDir: work, Jobs: 2})
					if err != nil {
						b.Fatal(err)
					}
					*into = append(*into, time.Since(start))
					run("sh", "-c", "dropdb "+conn+" "+res.Replaced)
				})
			}
			rawRestoreOf := func(file string, into *[]time.Duration) {
				*into = append(*into, run("sh", "-c", "createdb "+conn+" rawcopy && pg_restore -j2 "+conn+" -d rawcopy "+file))
				run("sh", "-c", "dropdb "+conn+" rawcopy")
			}
			rotate(round,
				func() { rawRestoreOf(filepath.Join(work, "raw.dump"), &rawRestoreDefault) },
				func() { rawRestoreOf(filepath.Join(onTarget.Dir, mt.Artifacts["database"].Key), &rawRestore) },
				func() { restorePeak = max(restorePeak, restore(store, m, &oursRestore)) },
				func() { restore(onTarget, mt, &oursRestoreTarget) })
		}
		b.ReportMetric(median(ours).Seconds()/median(raw).Seconds(), "x_raw_pg_dump")
		b.ReportMetric(median(oursRestore).Seconds()/median(rawRestore).Seconds(), "x_raw_pg_restore")
		b.ReportMetric(median(oursLevel6).Seconds()/median(raw).Seconds(), "x_raw_pg_dump_same_level")
		b.ReportMetric(median(oursTarget).Seconds()/median(raw).Seconds(), "x_raw_pg_dump_target_store")
		b.ReportMetric(median(oursRestoreTarget).Seconds()/median(rawRestore).Seconds(), "x_raw_pg_restore_target_store")
		b.ReportMetric(median(oursRestore).Seconds()/median(rawRestoreDefault).Seconds(), "x_raw_pg_restore_of_level6_dump")
		// The schema fingerprint (read by every snapshot) beside the whole
		// snapshot: one catalog query, whatever the data's size.
		var fp []time.Duration
		for range 5 {
			conn, err := pgx.Connect(b.Context(), pg.DSN("big"))
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := dbschema.Read(b.Context(), conn); err != nil {
				b.Fatal(err)
			}
			fp = append(fp, time.Since(start))
			conn.Close(b.Context())
		}
		b.ReportMetric(float64(median(fp).Microseconds())/1000, "ms_schema_fingerprint")
		b.ReportMetric(median(fp).Seconds()/median(ours).Seconds(), "x_fingerprint_of_snapshot")
		b.ReportMetric(float64(max(dumpPeak, restorePeak))/(1<<20), "MB_peak_heap")
		b.ReportMetric(float64(m.Artifacts["database"].Size)/(1<<20), "MB_dump")
		b.Logf("pg_dump raw %v, ours %v (level 6 %v, target store %v); pg_restore raw %v (of the level 6 dump %v), ours %v (target store %v)", raw, ours, oursLevel6, oursTarget, rawRestore, rawRestoreDefault, oursRestore, oursRestoreTarget)
	}
}
