package rollout

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/snapshots"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// throughForward configures the rig's target at an address where nothing
// answers (its known_hosts entry under that name) and reaches it through a
// forward, as the Dagger module reaches a --target-ssh service: every
// connection must go through ssh.via.
func throughForward(t *testing.T, s *testenv.SSHD, cfg *config.Config) *testenv.Forward {
	fwd := testenv.StartForward(t, fmt.Sprintf("%s:%d", s.Host, s.Port), nil)
	closed := testenv.FreePort(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", closed, s.HostKey)), 0o600))
	tg := &cfg.Targets[0]
	tg.SSH.Port, tg.SSH.KnownHosts, tg.SSH.Via = closed, kh, fwd.Addr
	return fwd
}

// Deploy, rollback --previous, snapshots in the target store and rollback
// --snapshot, all through the forward: what `dagger call --target-ssh=...`
// runs against the README's local target.
func TestAReleaseTravelsThroughAForward(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	cfg.Snapshots.Store = "target" // a file:// store would be the function's own, refused under Dagger
	fwd := throughForward(t, r.SSHD, cfg)

	_, out, err := r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v1"))
	require.NoError(t, err, "%+v", out)
	assert.Equal(t, "v1", r.version(t, "v1"))
	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v2"))
	require.NoError(t, err, "%+v", out)
	assert.Equal(t, "v2", r.version(t, "v2"))
	assert.Positive(t, fwd.Accepted.Load(), "the target was reached through the forward")

	// Without the forward the configured address answers nothing: the
	// same run fails before the lock, changing nothing.
	direct := *cfg
	direct.Targets = []config.Target{cfg.Targets[0]}
	direct.Targets[0].SSH.Via = ""
	d, err := PrepareSwitchBack(deploy.Request{Config: &direct, Resolver: r.resolver(), Who: "tester@ci", ID: report.NewID(time.Now())}, true)
	require.NoError(t, err)
	res := pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 2})
	d.Close()
	require.Error(t, res.Err(), "a switch back reached the configured address, where nothing answers")
	assert.Contains(t, res.Err().Error(), "connection refused")
	assert.Equal(t, "v2", r.version(t, "v2"), "nothing changed")

	// rollback --previous through the forward.
	d, err = PrepareSwitchBack(deploy.Request{Config: cfg, Resolver: r.resolver(), Who: "tester@ci", ID: report.NewID(time.Now())}, true)
	require.NoError(t, err)
	res = pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 2})
	d.Close()
	require.NoError(t, res.Err())
	assert.Equal(t, "v1", r.version(t, "v1"))

	// The snapshots live on the target, listed through the forward.
	s, err := OpenStore(t.Context(), cfg, r.resolver())
	require.NoError(t, err)
	defer s.Close()
	ms, errs := snapshots.List(t.Context(), s.Store)
	require.Empty(t, errs)
	require.NotEmpty(t, ms)
	var v1Post *snapshots.Manifest
	// The oldest post-deploy snapshot is v1's.
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Trigger == "post-deploy" {
			v1Post = ms[i]
			break
		}
	}
	require.NotNil(t, v1Post)

	// rollback --snapshot to v1's post-deploy snapshot, through the forward.
	m, plan, err := PlanFor(t.Context(), cfg, r.resolver(), s, v1Post.ID, nil)
	require.NoError(t, err)
	rs, err := PrepareRestore(t.Context(), RestoreRequest{Config: cfg, Resolver: r.resolver(), Store: s.Store, Manifest: m, Plan: plan, ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir()})
	require.NoError(t, err)
	defer rs.Close()
	run := pipelines.Run(t.Context(), rs.Graph(), pipelines.Options{MaxWorkers: 4})
	restored, err := rs.Finish(run)
	require.NoError(t, err, "%+v", restored)
	assert.Equal(t, "v1", r.version(t, "v1"))

	// Restoring the database without its admin role is refused before the
	// lock, saying what to set, with nothing changed.
	noAdmin := *cfg
	db := *cfg.Database
	db.AdminPassword = ""
	noAdmin.Database = &db
	_, err = PrepareRestore(t.Context(), RestoreRequest{Config: &noAdmin, Resolver: r.resolver(), Store: s.Store, Manifest: m, Plan: &RestorePlan{Components: []snapshots.Component{snapshots.ComponentBackend, snapshots.ComponentDatabase}},
		ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nothing was changed: restoring the database needs its admin role (database.admin_user and database.admin_password)")

	// verify through the forward: the site through the target's SSH
	// connection, the open-ports scan skipped with the reason (never a
	// pass), the baseline from the store.
	vr, err := Verify(t.Context(), VerifyRequest{Config: cfg, Resolver: r.resolver(), Categories: []checks.Category{checks.Health, checks.Security}})
	require.NoError(t, err)
	var ports *checks.Result
	for i, res := range vr.Suite.Results {
		if res.Name == "backend health /api/v1/health" {
			assert.Equal(t, checks.Pass, res.Status, res.Message)
		}
		if res.Name == "open ports local" {
			ports = &vr.Suite.Results[i]
		}
	}
	require.NotNil(t, ports)
	assert.Equal(t, checks.Skip, ports.Status)
	assert.Contains(t, ports.Message, "not scanned: target local is reached through a forward ("+fwd.Addr+")")
}

// Through a forward into another network namespace: the target's site is
// on a loopback this process cannot reach (as the caller's 127.0.0.1 is
// out of a Dagger function's reach), so the suite sees it only through the
// target's SSH connection; without the forward, nothing is reached.
func TestVerifySeesATargetOnlyThroughItsForward(t *testing.T) {
	ns := testenv.NewNetns(t)
	s := testenv.StartSSHDIn(t, ns)
	n := testenv.StartNginxIn(t, ns, `  server {
    listen 127.0.0.1:{{PORT}};
    add_header X-Frame-Options DENY always;
    location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
    location / { return 200 'hello'; }
  }`)
	fwd := ns.Forward(t, fmt.Sprintf("127.0.0.1:%d", s.Port))
	js := fmt.Sprintf(`{"version": 1, "app": "site",
	  "targets": [{"name": "hidden", "host": "127.0.0.1", "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q, "connect_timeout": "3s"}, "nginx": {"listen": %d}}],
	  "backend": {"image": "127.0.0.1:5000/site/backend", "health_path": "/healthz"},
	  "snapshots": {"enabled": false},
	  "verification": {"categories": ["health", "security"]}}`, s.User, s.Port, s.KeyPath, s.KnownHosts, n.Port)
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	cfg := l.Config

	// Directly: nothing answers at the configured addresses.
	_, err = Verify(t.Context(), VerifyRequest{Config: cfg, Resolver: &config.Resolver{}})
	require.NoError(t, err, "an unreachable target is a note, not an error, without a forward")
	vr, _ := Verify(t.Context(), VerifyRequest{Config: cfg, Resolver: &config.Resolver{}})
	assert.Contains(t, vr.Note, "SSH to hidden failed")
	assert.True(t, vr.Suite.Failed(), "the site cannot be reached directly")

	cfg.Targets[0].SSH.Via = fwd.Addr
	vr, err = Verify(t.Context(), VerifyRequest{Config: cfg, Resolver: &config.Resolver{}})
	require.NoError(t, err)
	assert.Empty(t, vr.Note)
	for _, res := range vr.Suite.Results {
		switch res.Name {
		case "backend health /healthz":
			assert.Equal(t, checks.Pass, res.Status, res.Message)
		case "open ports hidden":
			assert.Equal(t, checks.Skip, res.Status, res.Message)
		}
	}

	// Preflight from "inside the engine": SSH through the forward; the
	// loopback registry is skipped with the reason, never passed.
	g, err := deploy.Preflight(cfg, &config.Resolver{}, deploy.PreflightOptions{InEngine: true})
	require.NoError(t, err)
	pre := pipelines.Run(t.Context(), g, pipelines.Options{MaxWorkers: 4, ContinueOnFailure: true})
	states := map[string]pipelines.StepResult{}
	for _, st := range pre.Steps {
		states[st.Name] = st
	}
	assert.Equal(t, pipelines.Succeeded, states["ssh:hidden"].State, "%v", states["ssh:hidden"].Err)
	assert.Equal(t, pipelines.Skipped, states["registry"].State)
	assert.Contains(t, states["registry"].Reason, "pass --registry=tcp://localhost:5000 to probe it")
}

// A real application nobody here wrote, memos (from the Go module proxy),
// reached only through a forward as `dagger call --target-ssh` reaches it:
// its database bootstrapped through the tunnel, deploys of 0.21 and 0.22
// (which migrates at its start), verify with the ports scan skipped, its
// own output through logs, and rollback --snapshot with its database from
// the target store.
func TestMemosThroughAForward(t *testing.T) {
	r := newAppRig(t, "memos")
	v021 := r.ThirdPartyImage(t, memos021, "memos")
	v022 := r.ThirdPartyImage(t, memos022, "memos")
	cfg := r.config(t, `"port_env": "MEMOS_PORT", "health_path": "/healthz",
	    "env": {"MEMOS_MODE": "prod", "MEMOS_ADDR": "127.0.0.1", "MEMOS_DATA": "/tmp", "MEMOS_DRIVER": "postgres"}`,
		`"categories": ["health", "security"], "endpoints": [{"path": "/healthz"}]`)
	cfg.Database.URLEnv = "MEMOS_DSN"
	cfg.Snapshots.Store = "target"
	fwd := throughForward(t, r.SSHD, cfg)

	out, err := r.deploy(t, cfg, v021)
	require.NoError(t, err, "%+v", out)
	pre022ID := ""
	out, err = r.deploy(t, cfg, v022)
	require.NoError(t, err, "%+v", out)
	pre022ID = out.PreSnapshot
	assert.Equal(t, "0.21.0,0.22.0", r.psql(t, "SELECT string_agg(version, ',' ORDER BY version) FROM migration_history"))
	assert.Positive(t, fwd.Accepted.Load())

	vr, err := Verify(t.Context(), VerifyRequest{Config: cfg, Resolver: r.resolver()})
	require.NoError(t, err)
	for _, res := range vr.Suite.Results {
		switch res.Name {
		case "backend health /healthz":
			assert.Equal(t, checks.Pass, res.Status, res.Message)
		case "open ports local":
			assert.Equal(t, checks.Skip, res.Status, res.Message)
		}
	}

	var lines []LogLine
	_, err = Logs(t.Context(), LogsRequest{Config: cfg, Resolver: r.resolver(), Lines: 50}, func(l LogLine) error { lines = append(lines, l); return nil })
	require.NoError(t, err)
	require.NotEmpty(t, lines, "memos 0.22 printed nothing")
	for _, l := range lines {
		assert.NotContains(t, l.Message, r.pg.Password)
		assert.NotContains(t, l.Message, "app-pw-memos", "memos' database password is masked")
	}

	s, err := OpenStore(t.Context(), cfg, r.resolver())
	require.NoError(t, err)
	defer s.Close()
	m, plan, err := PlanFor(t.Context(), cfg, r.resolver(), s, pre022ID, nil)
	require.NoError(t, err)
	assert.Contains(t, plan.Components, snapshots.ComponentDatabase, "0.22 changed the schema")
	rs, err := PrepareRestore(t.Context(), RestoreRequest{Config: cfg, Resolver: r.resolver(), Store: s.Store, Manifest: m, Plan: plan, ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir()})
	require.NoError(t, err)
	defer rs.Close()
	restored, err := rs.Finish(pipelines.Run(t.Context(), rs.Graph(), pipelines.Options{MaxWorkers: 4}))
	require.NoError(t, err, "%+v", restored)
	assert.Equal(t, "0.21.0", r.psql(t, "SELECT string_agg(version, ',') FROM migration_history"), "0.22's migration is undone")
}
