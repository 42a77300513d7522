package rollout

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/snapshots"
	"github.com/lawsker/lawsker-deploy/testenv"
)

type rig struct {
	*testenv.TargetHost
	pg    *testenv.Postgres
	store string
	ports int
	last  *pipelines.Result // the last release's steps
}

func newRig(t *testing.T) *rig {
	r := &rig{TargetHost: testenv.StartTargetHost(t, "sample"), pg: testenv.StartPostgres(t), store: filepath.Join(t.TempDir(), "snapshots"), ports: testenv.ReservePorts(t, 20)}
	testenv.MustRun(t, testenv.Bin(t, "psql"), r.pg.DSN("postgres"), "-c", "CREATE DATABASE sample")
	r.psql(t, "CREATE TABLE cases (id int PRIMARY KEY, title text); INSERT INTO cases SELECT g, 'case ' || g FROM generate_series(1, 500) g")
	return r
}

func (r *rig) psql(t *testing.T, sql string) string {
	return strings.TrimSpace(testenv.MustRun(t, testenv.Bin(t, "psql"), r.pg.DSN("sample"), "-v", "ON_ERROR_STOP=1", "-tAc", sql))
}

func (r *rig) config(t *testing.T, extra string) *config.Config {
	h := r.TargetHost
	js := fmt.Sprintf(`{"version": 1, "app": "sample",
	  "targets": [{"name": "local", "host": "127.0.0.1",
	    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q},
	    "root": %q, "docker": {"host": %q},
	    "nginx": {"prefix": %q, "config": %q, "access_log": %q, "site_path": %q, "listen": %d, "listen_address": "127.0.0.1"}}],
	  "backend": {"image": "%s/sample/backend", "network": "host", "migrate_command": ["/app/backend", "migrate"], "routes": ["/api/"],
	    "health_gate": {"interval": "200ms", "deadline": "6s", "consecutive_passes": 2}, "host_port_min": %d, "host_port_max": %d},
	  "database": {"host": "127.0.0.1", "port": %d, "name": "sample", "user": %q, "password": "env:PG_PW", "sslmode": "disable", "url_env": "SAMPLE_DATABASE_URL",
	    "admin_user": %q, "admin_password": "env:PG_PW"},
	  "snapshots": {"store": "file://%s"},
	  "verification": {"categories": ["health"]},
	  "rollback": {"watch_window": "1500ms", "health_check_threshold": 3}%s}`,
		h.SSHD.User, h.SSHD.Port, h.SSHD.KeyPath, h.SSHD.KnownHosts, h.Root, h.Docker.Host,
		h.Nginx.Dir, h.Nginx.Conf, h.Nginx.Dir+"/host-access.log", h.SitePath("sample"), h.AppPort, h.Registry.Addr, r.ports, r.ports+19,
		r.pg.Port, r.pg.User, r.pg.User, r.store, extra)
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func (r *rig) resolver() *config.Resolver {
	env := map[string]string{"PG_PW": r.pg.Password}
	return &config.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
}

func (r *rig) release(t *testing.T, cfg *config.Config, image string, frontend ...string) (*Rollout, Outcome, error) {
	dr := deploy.Request{Config: cfg, Image: image, Who: "tester@ci", ID: report.NewID(time.Now()), Resolver: r.resolver()}
	if len(frontend) > 0 {
		dr.FrontendDir = frontend[0]
	}
	ro, err := Prepare(Request{Deploy: dr})
	require.NoError(t, err)
	t.Cleanup(ro.Close)
	res := pipelines.Run(t.Context(), ro.Graph(), pipelines.Options{MaxWorkers: 4})
	for _, s := range res.Steps {
		t.Logf("%s %s %s", s.Name, s.State, s.Duration().Round(time.Millisecond))
	}
	r.last = res
	out, err := ro.Finish(res)
	return ro, out, err
}

func (r *rig) version(t *testing.T, want string) string {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.TrimSpace(string(b)); got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The database travels with the release: a release whose migrations ran
// and which then fails is rolled back with its database.
func TestReleaseSnapshotsAndAutomaticRollbackWithTheDatabase(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	store := snapshots.FileStore{Dir: r.store}
	ctx := context.Background()

	// v1: pre-deploy snapshot (the database; nothing serves yet), migrate,
	// verify, post-deploy snapshot.
	_, out, err := r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v1"))
	require.NoError(t, err, "%+v", out)
	assert.Nil(t, out.Trigger)
	require.NotEmpty(t, out.PreSnapshot)
	require.NotEmpty(t, out.PostSnapshot)
	require.NotNil(t, out.Verification)
	assert.False(t, out.Verification.Failed())
	assert.Positive(t, out.Watch.Checks)
	assert.Equal(t, "v1", r.version(t, "v1"))
	assert.Equal(t, "v1", r.psql(t, "SELECT version_num FROM alembic_version"))
	pre, err := snapshots.Load(ctx, store, out.PreSnapshot)
	require.NoError(t, err)
	assert.Equal(t, "pre-deploy", pre.Trigger)
	assert.Equal(t, []snapshots.Component{"database", "config"}, pre.Components)
	assert.Equal(t, "", pre.Database.MigrationVersion, "taken before v1's migrations")
	post, err := snapshots.Load(ctx, store, out.PostSnapshot)
	require.NoError(t, err)
	assert.Equal(t, []snapshots.Component{"database", "backend", "config"}, post.Components)
	assert.Equal(t, "v1", post.Database.MigrationVersion)
	assert.Equal(t, "alembic v1", post.Database.Migration())
	assert.False(t, dbschema.Same(pre.Database.Schema, post.Database.Schema), "v1's migration made a table")
	assert.Equal(t, map[snapshots.Component]string{"backend": r.Registry.Addr + "/sample/backend:snapshot-" + post.ID}, post.ImageTags)
	assert.Empty(t, post.Warnings)
	require.NoError(t, snapshots.Check(ctx, store, post))

	// v2 migrates, passes the health gate, then its health fails after the
	// switch: the watch triggers, v1 serves again and the database goes back
	// to v1's schema and rows.
	r.psql(t, "DELETE FROM cases WHERE id > 400")
	bad := r.Image(t, "./examples/sample/backend", "sample/backend", "v2", "-X main.healthyAnswers=8")
	// Under a constant 200 requests/s answered from the database: v2's
	// migrations run while v1 serves (v1 on v2's schema until the switch,
	// as any deploy that migrates first); once the undo begins, neither
	// code serves on the other's schema and nothing but maintenance
	// answers fails.
	stop := schemaLoad(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/schema", r.AppPort), 200)
	_, out, err = r.release(t, cfg, bad)
	time.Sleep(300 * time.Millisecond)
	seen := stop()
	require.Error(t, err)
	undo, ok := r.last.Step(deploy.StepSwapDatabase)
	require.True(t, ok)
	assert.Equal(t, pipelines.Succeeded, undo.State, "%v", undo.Err)
	t.Logf("automatic rollback with the database under load: %s; the hold, as the rollback measured it: %.3f s", seen, out.HoldSeconds)
	assert.Empty(t, seen.Errors, "%s", seen)
	for _, m := range seen.Mismatched {
		assert.True(t, m.At.Before(undo.Start), "%s answered at %s, after the undo began at %s", m.What, m.At.Format("15:04:05.000"), undo.Start.Format("15:04:05.000"))
	}
	assert.Positive(t, seen.Codes["v2 on v2"], "%s", seen)
	assert.Positive(t, out.HoldSeconds)
	require.NotNil(t, out.Trigger, "%+v", out)
	assert.Equal(t, TriggerHealth, out.Trigger.Kind, out.Trigger.Reason)
	assert.True(t, out.Watch.Triggered)
	assert.Equal(t, []snapshots.Component{"backend", "database"}, out.RolledBack)
	assert.Equal(t, DatabaseRestored, out.Database.Status)
	assert.Regexp(t, `^restored from `+out.PreSnapshot+` \(the release changed it: schema: `+fmt.Sprint(post.Database.Schema.Tables)+` tables -> `+fmt.Sprint(post.Database.Schema.Tables+1)+`; fingerprint `+post.Database.Schema.Short()+` -> [0-9a-f]{12}; dump `+snapshots.TransferCopied+`\)`, out.Database.String(), "v2 made one table; a file:// store on this machine: the dump is copied to the target")
	assert.Equal(t, "v1", r.version(t, "v1"))
	assert.Equal(t, "v1", r.psql(t, "SELECT version_num FROM alembic_version"))
	assert.Equal(t, "", r.psql(t, "SELECT to_regclass('release_v2')"), "v2's table is gone")
	assert.Equal(t, "400", r.psql(t, "SELECT count(*) FROM cases"), "the rows as they were before v2")
	assert.Empty(t, out.PostSnapshot)

	// A migration that fails leaves the version as it was: the database is
	// kept, the release removed.
	broken := r.Image(t, "./examples/sample/backend", "sample/backend", "v3", "-X main.migrationFails=true")
	_, out, err = r.release(t, cfg, broken)
	require.Error(t, err)
	assert.Equal(t, TriggerDeployFailure, out.Trigger.Kind)
	assert.Contains(t, out.Trigger.Reason, "migrate: migration `/app/backend migrate` failed")
	assert.Equal(t, "kept: the release left the "+dbschema.Change(post.Database.Schema, post.Database.Schema), out.Database.String())
	assert.Empty(t, out.RolledBack, "v1 never stopped serving")
	assert.Equal(t, "v1", r.version(t, "v1"))

	// A migration that fails half way (its table made, then an error):
	// the schema changed, so the database goes back, whatever the
	// migration tool's version says.
	half := r.Image(t, "./examples/sample/backend", "sample/backend", "v3h", "-X main.migrationFails=halfway")
	_, out, err = r.release(t, cfg, half)
	require.Error(t, err)
	assert.Equal(t, TriggerDeployFailure, out.Trigger.Kind)
	assert.Equal(t, DatabaseRestored, out.Database.Status, out.Database.Detail)
	assert.Contains(t, out.Database.Detail, "the release changed it: schema: ")
	assert.Equal(t, "", r.psql(t, "SELECT to_regclass('release_v3h')"), "the half-made table is gone")
	assert.Equal(t, "v1", r.psql(t, "SELECT version_num FROM alembic_version"))
	assert.Equal(t, "400", r.psql(t, "SELECT count(*) FROM cases"))

	// A migration that hangs after changing the schema: stopped at its
	// step's timeout, and the database goes back.
	impatient := *cfg
	impatient.Execution.StepTimeout = config.Duration(4 * time.Second)
	hang := r.Image(t, "./examples/sample/backend", "sample/backend", "v3w", "-X main.migrationFails=hangs")
	_, out, err = r.release(t, &impatient, hang)
	require.Error(t, err)
	assert.Contains(t, out.Trigger.Reason, "migrate")
	assert.Equal(t, DatabaseRestored, out.Database.Status, out.Database.Detail)
	assert.Equal(t, "", r.psql(t, "SELECT to_regclass('release_v3w')"))
	assert.Equal(t, "v1", r.version(t, "v1"))

	// A database renamed behind the tool's back: the pre-deploy snapshot
	// cannot reach it, so the deploy stops before anything changes.
	admin := func(sql string) {
		testenv.MustRun(t, testenv.Bin(t, "psql"), r.pg.DSN("postgres"), "-v", "ON_ERROR_STOP=1", "-c", sql)
	}
	admin("ALTER DATABASE sample RENAME TO sample_moved")
	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v3r"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `database "sample" does not exist`)
	assert.Equal(t, "unchanged: neither the migrations nor the new backend started", out.Database.String())
	assert.Equal(t, "v1", r.version(t, "v1"))
	admin("ALTER DATABASE sample_moved RENAME TO sample")
	assert.Equal(t, "", r.psql(t, "SELECT to_regclass('release_v3r')"), "nothing ran")

	// A release that never becomes healthy after migrating: reverted before
	// any switch, and its migration undone.
	sick := r.Image(t, "./examples/sample/backend", "sample/backend", "v4", "-X main.healthy=false")
	_, out, err = r.release(t, cfg, sick)
	require.Error(t, err)
	assert.Equal(t, TriggerDeployFailure, out.Trigger.Kind)
	assert.Contains(t, out.Trigger.Reason, "health-gate:local")
	assert.Contains(t, out.Database.String(), "(the release changed it: schema: "+fmt.Sprint(post.Database.Schema.Tables)+" tables -> "+fmt.Sprint(post.Database.Schema.Tables+1)+"; fingerprint "+post.Database.Schema.Short()+" -> ")
	assert.Equal(t, "v1", r.psql(t, "SELECT version_num FROM alembic_version"))
	assert.Equal(t, "v1", r.version(t, "v1"))

	// With rollback.auto off, the failing release stays and the run fails.
	manual := *cfg
	manual.Rollback.Auto = false
	_, out, err = r.release(t, &manual, r.Image(t, "./examples/sample/backend", "sample/backend", "v5", "-X main.healthyAnswers=8"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rollback.auto is false, so the release stays")
	assert.Equal(t, TriggerHealth, out.Trigger.Kind)
	assert.Empty(t, out.RolledBack)
	assert.Equal(t, "v5", r.version(t, "v5"))
	assert.Equal(t, "v5", r.psql(t, "SELECT version_num FROM alembic_version"))
}

func frontendDir(t *testing.T, version string) string {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "assets"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><p>frontend "+version+"</p>"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "assets", version+".css"), []byte("body{}"), 0o644))
	return dir
}

func (r *rig) index(t *testing.T) string {
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(fmt.Sprintf("http://127.0.0.1:%d/", r.AppPort))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// rollback --snapshot: the release of a snapshot (image, frontend,
// configuration) comes back, with the database when its schema differs; checksums are verified before anything changes.
func TestRollbackToASnapshotWithItsDatabase(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, `, "frontend": {}`)
	store := snapshots.FileStore{Dir: r.store}
	ctx := context.Background()
	v1 := r.Image(t, "./examples/sample/backend", "sample/backend", "v1")
	_, out, err := r.release(t, cfg, v1, frontendDir(t, "v1"))
	require.NoError(t, err, "%+v", out)
	s1, err := snapshots.Load(ctx, store, out.PostSnapshot)
	require.NoError(t, err)
	assert.Equal(t, []snapshots.Component{"database", "backend", "frontend", "config"}, s1.Components)
	rowsAtS1 := r.psql(t, "SELECT count(*) FROM cases")

	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v2"), frontendDir(t, "v2"))
	require.NoError(t, err, "%+v", out)
	r.psql(t, "DELETE FROM cases WHERE id > 100")
	assert.Equal(t, "v2", r.version(t, "v2"))

	// Bad input first: nothing changes.
	now := &dbschema.Schema{Fingerprint: "v2's", Tables: 9}
	_, err = PlanRestore(cfg, s1, []string{"kernel"}, now)
	assert.ErrorContains(t, err, `unknown component "kernel" (backend, frontend, config, database, tls, monitoring)`)
	_, err = PlanRestore(cfg, s1, []string{"frontend"}, now)
	assert.ErrorContains(t, err, "frontend and config are restored with the backend")
	_, err = PlanRestore(cfg, s1, []string{"backend"}, now)
	assert.ErrorContains(t, err, "restore both (add frontend)")
	same, err := PlanRestore(cfg, s1, nil, s1.Database.Schema)
	require.NoError(t, err)
	assert.Equal(t, []snapshots.Component{"backend", "frontend", "config"}, same.Components, "the same schema: the data stays")
	assert.Equal(t, "medium", same.Risk)

	unknown, err := PlanRestore(cfg, s1, nil, nil)
	require.NoError(t, err)
	assert.Contains(t, unknown.Components, snapshots.ComponentDatabase, "a schema that cannot be read counts as changed")
	plan, err := PlanRestore(cfg, s1, nil, now)
	require.NoError(t, err)
	assert.Equal(t, []snapshots.Component{"backend", "frontend", "config", "database"}, plan.Components)
	assert.Equal(t, "the database, because "+dbschema.Change(now, s1.Database.Schema)+" (now -> the snapshot's)", plan.DatabaseWhy)
	assert.Equal(t, "high", plan.Risk)
	assert.Equal(t, v1, plan.Image)

	// A damaged frontend tarball: refused before any change.
	tarball := filepath.Join(r.store, s1.Artifacts["frontend"].Key)
	good, err := os.ReadFile(tarball)
	require.NoError(t, err)
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0xff
	require.NoError(t, os.WriteFile(tarball, bad, 0o600))
	_, err = PrepareRestore(ctx, RestoreRequest{Config: cfg, Resolver: r.resolver(), Store: store, Manifest: s1, Plan: plan, ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir()})
	assert.ErrorIs(t, err, snapshots.ErrChecksum)
	assert.Equal(t, "v2", r.version(t, "v2"))
	assert.Equal(t, "v2", r.psql(t, "SELECT version_num FROM alembic_version"))
	require.NoError(t, os.WriteFile(tarball, good, 0o600))

	// The snapshot's backend fails its gate inside the hold: the swap is
	// undone, v2 serves again on its own database, rows included.
	rowsAtV2 := r.psql(t, "SELECT count(*) FROM cases")
	sick := *cfg
	sick.Backend.HealthPath = "/api/v1/nope"
	sick.Backend.HealthGate.Deadline = config.Duration(2 * time.Second)
	noConfig, err := PlanRestore(&sick, s1, []string{"backend", "frontend", "database"}, now)
	require.NoError(t, err)
	rs, err := PrepareRestore(ctx, RestoreRequest{Config: &sick, Resolver: r.resolver(), Store: store, Manifest: s1, Plan: noConfig, ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(rs.Close)
	out, err = rs.Finish(pipelines.Run(t.Context(), rs.Graph(), pipelines.Options{MaxWorkers: 4}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "health-gate:local")
	assert.Empty(t, out.RolledBack)
	assert.Equal(t, DatabaseUntouched, out.Database.Status, out.Database.Detail)
	assert.Contains(t, out.Database.Detail, "is back under its name")
	assert.Equal(t, "v2", r.version(t, "v2"))
	assert.Equal(t, "v2", r.psql(t, "SELECT version_num FROM alembic_version"))
	assert.Equal(t, rowsAtV2, r.psql(t, "SELECT count(*) FROM cases"))

	rs, err = PrepareRestore(ctx, RestoreRequest{Config: cfg, Resolver: r.resolver(), Store: store, Manifest: s1, Plan: plan, ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(rs.Close)
	// Under a constant 200 requests/s, each answered from the database:
	// no error, neither code on the other's schema, the maintenance
	// answers only during the hold.
	stop := schemaLoad(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/schema", r.AppPort), 200)
	time.Sleep(300 * time.Millisecond)
	res := pipelines.Run(t.Context(), rs.Graph(), pipelines.Options{MaxWorkers: 4})
	for _, s := range res.Steps {
		t.Logf("%s %s %s", s.Name, s.State, s.Duration().Round(time.Millisecond))
	}
	out, err = rs.Finish(res)
	time.Sleep(300 * time.Millisecond)
	seen := stop()
	require.NoError(t, err, "%+v", out)
	t.Logf("rollback with the database under load: %s; the hold, as the rollback measured it: %.3f s", seen, out.HoldSeconds)
	assert.Empty(t, seen.Errors, "%s", seen)
	assert.Empty(t, seen.Mismatched, "%s", seen)
	assert.Positive(t, seen.Codes["v2 on v2"], "%s", seen)
	assert.Positive(t, seen.Codes["v1 on v1"], "%s", seen)
	assert.Positive(t, out.HoldSeconds, "the database was swapped under a hold")
	assert.Equal(t, plan.Components, out.RolledBack)
	assert.Contains(t, out.Database.String(), "restored from "+s1.ID)
	assert.False(t, out.Verification.Failed())
	assert.Equal(t, "v1", r.version(t, "v1"))
	assert.Contains(t, r.index(t), "frontend v1")
	assert.Equal(t, "v1", r.psql(t, "SELECT version_num FROM alembic_version"))
	assert.Equal(t, rowsAtS1, r.psql(t, "SELECT count(*) FROM cases"))
}

// A backend that serves, passes its gate, then crashes 6 s after its start
// (Docker restarts it), five times: the crash is a trigger by itself, the
// suite is cut short, and the previous release serves again with its
// database. While the new backend is down, nginx hands clients' requests
// to the warm previous one (the site's fallback). Printed: the failed
// requests at 200/s and the time from the crash to the revert done, per
// round and their median.
func TestACrashAfterTheSwitchIsATrigger(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	cfg.Rollback.WatchWindow = config.Duration(30 * time.Second)
	_, out, err := r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v1"))
	require.NoError(t, err, "%+v", out)
	const after, rate, rounds = 6 * time.Second, 200, 5
	crashing := r.Image(t, "./examples/sample/backend", "sample/backend", "v2c", "-X main.crashAfter="+after.String())
	var reverts []time.Duration
	for round := 1; round <= rounds; round++ {
		stop := schemaLoad(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/schema", r.AppPort), rate)
		_, out, err = r.release(t, cfg, crashing)
		seen := stop()
		require.Error(t, err)
		require.NotNil(t, out.Trigger, "%+v", out)
		assert.Equal(t, TriggerCrash, out.Trigger.Kind, out.Trigger.Reason)
		assert.Regexp(t, `the new backend sample-\S+ (crashed and was restarted \d+ time\(s\) by Docker's restart policy|exited \(code 1\))`, out.Trigger.Reason)
		assert.Equal(t, DatabaseRestored, out.Database.Status, out.Database.Detail)
		assert.Equal(t, "v1", r.version(t, "v1"))
		started, ok := r.last.Step(deploy.StepStartBackend + ":local")
		require.True(t, ok)
		switched, ok := r.last.Step(deploy.StepSwitch + ":local")
		require.True(t, ok)
		reverted, ok := r.last.Step(deploy.StepRevert + ":local")
		require.True(t, ok)
		crashAt := started.End.Add(after)
		window := reverted.End.Sub(switched.End)
		inWindow := int(window.Seconds() * rate)
		reverts = append(reverts, reverted.End.Sub(crashAt))
		t.Logf("round %d: %s; %d failed of about %d requests between the switch and the revert done (%.2f%%); crash (about %s) to revert done: %s (the database restored under a hold of %.3f s in it)",
			round, seen, len(seen.Errors), inWindow, 100*float64(len(seen.Errors))/float64(max(inWindow, 1)),
			crashAt.Format("15:04:05.000"), reverted.End.Sub(crashAt).Round(time.Millisecond), out.HoldSeconds)
		// The previous code answers on the new schema only while it did
		// before the switch (the migrations run first), and while the new
		// release serves (a request its crashed backend refuses goes to
		// the warm previous one): never once the hold began, before the
		// database went back.
		undo, ok := r.last.Step(deploy.StepSwapDatabase)
		require.True(t, ok)
		holdFrom := undo.End
		if !seen.FirstHold.IsZero() {
			holdFrom = seen.FirstHold
		}
		for _, m := range seen.Mismatched {
			assert.True(t, m.At.Before(holdFrom), "%s at %s, after the hold began at %s", m.What, m.At.Format("15:04:05.000"), holdFrom.Format("15:04:05.000"))
		}
	}
	slices.Sort(reverts)
	t.Logf("crash to revert done, median of %d: %s (all: %v)", rounds, reverts[rounds/2].Round(time.Millisecond), reverts)
}

// A release whose health stays green but which fails 1 request in 20 of
// the clients' (the sample's failEvery): nginx's log of the release shows
// it in the watch window, and that is a trigger; a good release under the
// same traffic is kept, its requests counted.
func TestClientErrorsInTheAccessLogAreATrigger(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	cfg.Rollback.WatchWindow = config.Duration(6 * time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort)
	_, out, err := r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v1"))
	require.NoError(t, err, "%+v", out)

	stop := clients(url, 100)
	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v2"))
	codes := stop()
	require.NoError(t, err, "%+v", out)
	require.NotNil(t, out.Watch.Served, "%+v", out.Watch)
	assert.GreaterOrEqual(t, out.Watch.Served.Requests, MinServed, "%+v (clients saw %v)", out.Watch.Served, codes)
	assert.Zero(t, out.Watch.Served.Errors, "%+v", out.Watch.Served)
	assert.Positive(t, out.Watch.Served.Own, "the suite's own requests are counted apart")

	stop = clients(url, 100)
	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v3f", "-X main.failEvery=20"))
	codes = stop()
	require.Error(t, err)
	require.NotNil(t, out.Trigger, "%+v", out)
	assert.Equal(t, TriggerErrorRate, out.Trigger.Kind, out.Trigger.Reason)
	assert.Regexp(t, `^nginx answered \d+ of \d+ client requests to the new release with 5xx \(last: 500 at \d\d:\d\d:\d\d\.\d{3}\); rollback.error_rate_threshold 0.005$`, out.Trigger.Reason)
	assert.Equal(t, "v2", r.version(t, "v2"), "v2 serves again")
	t.Logf("failing 1 in 20: %s; clients saw %v", out.Trigger.Reason, codes)
}

// clients sends GET url at rate per second (vegeta's constant pacer, its
// own User-Agent) until stop, which returns the statuses seen.
func clients(url string, rate int) (stop func() map[int]int) {
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	attacker := vegeta.NewAttacker(vegeta.Timeout(5*time.Second), vegeta.KeepAlive(true))
	results := attacker.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, 0, "clients")
	done := make(chan map[int]int, 1)
	go func() {
		codes := map[int]int{}
		for res := range results {
			codes[int(res.Code)]++
		}
		done <- codes
	}()
	return func() map[int]int { attacker.Stop(); return <-done }
}

// A frontend added to an app that had none, then removed: each deploy
// works, and each pre-deploy snapshot holds what the serving release had.
func TestAddingAndRemovingTheFrontend(t *testing.T) {
	r := newRig(t)
	store := snapshots.FileStore{Dir: r.store}
	plain, withFront := r.config(t, ""), r.config(t, `, "frontend": {}`)
	_, out, err := r.release(t, plain, r.Image(t, "./examples/sample/backend", "sample/backend", "v1"))
	require.NoError(t, err, "%+v", out)

	_, out, err = r.release(t, withFront, r.Image(t, "./examples/sample/backend", "sample/backend", "v2"), frontendDir(t, "v2"))
	require.NoError(t, err, "%+v", out)
	pre, err := snapshots.Load(t.Context(), store, out.PreSnapshot)
	require.NoError(t, err)
	assert.NotContains(t, pre.Components, snapshots.ComponentFrontend, "v1 had no frontend")
	assert.Contains(t, r.index(t), "frontend v2")

	_, out, err = r.release(t, plain, r.Image(t, "./examples/sample/backend", "sample/backend", "v3"))
	require.NoError(t, err, "%+v", out)
	pre, err = snapshots.Load(t.Context(), store, out.PreSnapshot)
	require.NoError(t, err)
	assert.Contains(t, pre.Components, snapshots.ComponentFrontend, "v2 had one, though the new configuration has none")
	assert.Equal(t, "v3", r.version(t, "v3"))
}
