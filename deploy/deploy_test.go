package deploy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestDeployLifecycle(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1, v2 := r.image(t, "v1"), r.image(t, "v2")

	var first run
	t.Run("first deploy serves v1", func(t *testing.T) {
		first = r.deploy(t, cfg, v1, frontend(t, "v1"))
		require.NoError(t, first.res.Err())
		r.serves(t, "v1")
		_, greeting := r.get(t, "/api/v1/env?name=SAMPLE_GREETING")
		assert.Equal(t, hostileEnv, greeting, "env values reach the backend verbatim")
		_, token := r.get(t, "/api/v1/env?name=SAMPLE_TOKEN")
		assert.Equal(t, "token-s3cret-value", token)
		st := r.state(t)
		cur, ok := st.Current()
		require.True(t, ok)
		assert.Equal(t, v1, cur.Image)
		assert.Equal(t, `release "notes" $(x); rm -rf /`, cur.Message, "stored verbatim")
		assert.Nil(t, st.InProgress)
		env, err := os.Stat(filepath.Join(r.root, "sample", "releases", cur.ID, "backend.env"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), env.Mode().Perm())
		odd, err := os.ReadFile(filepath.Join(r.root, "sample", "releases", cur.ID, "frontend", `odd name 'q' "dq" $(x).txt`))
		require.NoError(t, err)
		assert.Equal(t, "hostile file name", string(odd))
		r.unlocked(t)
	})

	t.Run("second deploy switches to v2 and keeps v1 warm", func(t *testing.T) {
		second := r.deploy(t, cfg, v2, frontend(t, "v2"))
		require.NoError(t, second.res.Err())
		r.serves(t, "v2")
		st := r.state(t)
		cur, _ := st.Current()
		prev, ok := st.Previous()
		require.True(t, ok)
		assert.Equal(t, v2, cur.Image)
		assert.Equal(t, v1, prev.Image)
		assert.ElementsMatch(t, []string{cur.Container, prev.Container}, r.running(t), "the previous backend stays running")
		o := second.d.Outcomes()[0]
		assert.Equal(t, 2, o.Frontend.Uploaded, "index.html and the new css")
		assert.Equal(t, 2, o.Frontend.Reused, "unchanged files are hard-linked, not uploaded")
		assert.Equal(t, 1, o.Frontend.Removed, "v1's css is gone")
		r.unlocked(t)
	})

	t.Run("the same deploy again is a no-op that says so", func(t *testing.T) {
		again := r.deploy(t, cfg, v2, frontend(t, "v2"))
		require.NoError(t, again.res.Err())
		o := again.d.Outcomes()[0]
		assert.Contains(t, o.NoOp, "already serves "+v2)
		s, _ := again.res.Step("switch:local")
		assert.Equal(t, pipelines.Skipped, s.State)
		r.serves(t, "v2")
		r.unlocked(t)
	})

	t.Run("a rotated secret redeploys the same release; its value is never stored", func(t *testing.T) {
		rotated := func(req *Request) {
			req.Resolver = &config.Resolver{LookupEnv: func(k string) (string, bool) {
				return map[string]string{"SAMPLE_TOKEN": "token-r0tated-value"}[k], k == "SAMPLE_TOKEN"
			}}
		}
		// A folder no release names (a try that died before its journal
		// named it) is pruned with the old releases.
		orphan := filepath.Join(r.root, "sample", "releases", "20200101_000000_dead00")
		require.NoError(t, os.MkdirAll(orphan, 0o755))
		again := r.deploy(t, cfg, v2, frontend(t, "v2"), rotated)
		require.NoError(t, again.res.Err())
		assert.Empty(t, again.d.Outcomes()[0].NoOp, "the secret's value changed")
		assert.NoDirExists(t, orphan)
		s, _ := again.res.Step("switch:local")
		assert.Equal(t, pipelines.Succeeded, s.State)
		code, body := r.get(t, "/api/v1/env?name=SAMPLE_TOKEN")
		assert.Equal(t, 200, code)
		assert.Contains(t, body, "token-r0tated-value", "the new value serves")
		state := string(mustRead(t, filepath.Join(r.root, "sample", "state.json")))
		assert.Contains(t, state, `"secrets_hash": "`)
		assert.NotContains(t, state, "token-r0tated-value")
		assert.NotContains(t, state, "token-s3cret-value")
		once := r.deploy(t, cfg, v2, frontend(t, "v2"), rotated)
		require.NoError(t, once.res.Err())
		assert.Contains(t, once.d.Outcomes()[0].NoOp, "with this frontend, configuration and secret values")
		r.unlocked(t)
	})

	t.Run("a broken release fails its health gate and v2 keeps serving", func(t *testing.T) {
		before := r.running(t)
		v3 := r.image(t, "v3", "-X main.healthy=false")
		bad := r.deploy(t, cfg, v3, frontend(t, "v3"))
		require.Error(t, bad.res.Err())
		err := stepErr(bad.res, "health-gate:local")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "health gate: http://127.0.0.1:")
		assert.Contains(t, err.Error(), `status 500 (healthy: [200]): "{\"error\":\"database unreachable\"`)
		assert.Contains(t, err.Error(), "--- last lines of sample-", "the container's log tail is shown")
		assert.Contains(t, err.Error(), "sample backend v3 listening on")
		r.serves(t, "v2")
		assert.ElementsMatch(t, before, r.running(t), "the broken container is removed")
		cur, _ := r.state(t).Current()
		assert.Equal(t, v2, cur.Image)
		assert.Nil(t, r.state(t).InProgress)
		assert.Contains(t, bad.d.Outcomes()[0].Reverted, "removed the new release")
		r.unlocked(t)
	})

	t.Run("a failing migration changes nothing", func(t *testing.T) {
		v4 := r.image(t, "v4", "-X main.migrationFails=true")
		bad := r.deploy(t, cfg, v4, frontend(t, "v4"))
		err := stepErr(bad.res, "migrate")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "migration `/app/backend migrate` failed; nothing was switched")
		assert.Contains(t, err.Error(), `relation "cases" already exists`)
		r.serves(t, "v2")
		r.unlocked(t)
	})

	t.Run("an image digest the registry does not have changes nothing", func(t *testing.T) {
		// Asked before the lock (a manifest HEAD): refused at once.
		missing := r.repo + "@sha256:" + strings.Repeat("ab", 32)
		_, err := Prepare(Request{Config: cfg, Image: missing, FrontendDir: frontend(t, "v9"), Who: "tester@ci", ID: report.NewID(time.Now()), Resolver: sampleResolver()})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "--backend-image "+missing+": the registry has no such manifest")
		r.serves(t, "v2")
		r.unlocked(t)
	})

	t.Run("a second deploy fails at once while the lock is held, naming the holder", func(t *testing.T) {
		h := connectRig(t, r)
		l := NewLayout(cfg, cfg.Targets[0])
		require.NoError(t, AcquireLock(t.Context(), h, l, LockInfo{ID: "other-deploy", Who: "alice@laptop", When: time.Now(), Message: "hotfix"}))
		start := time.Now()
		blocked := r.deploy(t, cfg, v1, frontend(t, "v1"))
		err := stepErr(blocked.res, "lock:local")
		require.ErrorIs(t, err, ErrLocked)
		assert.Contains(t, err.Error(), "is locked by deploy other-deploy by alice@laptop since ")
		assert.Contains(t, err.Error(), ": hotfix")
		assert.Less(t, time.Since(start), 5*time.Second)
		info, err := ReadLock(h, l)
		require.NoError(t, err)
		assert.Equal(t, "other-deploy", info.ID, "someone else's lock is not released")
		require.Error(t, ReleaseLock(t.Context(), h, l, "not-the-holder", false))
		require.NoError(t, ReleaseLock(t.Context(), h, l, "", true))
		r.serves(t, "v2")
	})

	t.Run("an nginx configuration that fails nginx -t leaves the target unchanged", func(t *testing.T) {
		clash := filepath.Join(r.nginx.Dir, "sites", "zz-clash.conf")
		upstream := NewLayout(cfg, cfg.Targets[0]).Name + "_backend"
		require.NoError(t, os.WriteFile(clash, []byte("upstream "+upstream+" { server 127.0.0.1:1; }\n"), 0o644))
		defer os.Remove(clash)
		site, err := os.Readlink(filepath.Join(r.nginx.Dir, "sites", "sample.conf"))
		require.NoError(t, err)
		bad := r.deploy(t, cfg, v1, frontend(t, "v1-again"))
		err = stepErr(bad.res, "switch:local")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "nginx -t refused the new site configuration (nothing was reloaded)")
		assert.Contains(t, err.Error(), `duplicate upstream "`+upstream+`"`)
		now, err := os.Readlink(filepath.Join(r.nginx.Dir, "sites", "sample.conf"))
		require.NoError(t, err)
		assert.Equal(t, site, now, "the site link is back")
		os.Remove(clash)
		r.serves(t, "v2")
		r.unlocked(t)
	})

	t.Run("a killed deploy is converged by the next one", func(t *testing.T) {
		// Run a deploy's steps up to the middle of the switch, then stop as
		// a killed process would: no revert, no unlock.
		req := Request{Config: cfg, Image: v1, FrontendDir: frontend(t, "v1-killed"), Who: "killed@ci", ID: report.NewID(time.Now()),
			Resolver: &config.Resolver{LookupEnv: func(k string) (string, bool) { return "token-s3cret-value", k == "SAMPLE_TOKEN" }}}
		d, err := Prepare(req)
		require.NoError(t, err)
		defer d.Close()
		tr := d.targets[0]
		ctx := t.Context()
		require.NoError(t, d.lock(ctx, tr))
		require.NoError(t, d.prepare(ctx, tr))
		require.NoError(t, d.pull(ctx, tr))
		require.NoError(t, d.start(ctx, tr))
		require.NoError(t, d.upload(ctx, tr))
		require.NoError(t, tr.record(StepSwitch, Undo{Kind: UndoSite, To: tr.previous}))         // write-ahead, as switchOver does
		require.NoError(t, tr.host.Symlink(ctx, tr.layout.SiteConf(req.ID), tr.layout.SitePath)) // linked, not reloaded
		r.serves(t, "v2")                                                                        // nginx still has the old config

		h := connectRig(t, r)
		require.NoError(t, ReleaseLock(ctx, h, tr.layout, "", true)) // the operator clears the dead deploy's lock
		next := r.deploy(t, cfg, v1, frontend(t, "v1-after"))
		require.NoError(t, next.res.Err())
		r.serves(t, "v1-after"[:2]) // backend v1
		_, index := r.get(t, "/")
		assert.Contains(t, index, "frontend v1-after")
		assert.NotContains(t, r.running(t), tr.container, "the killed deploy's container is gone")
		_, err = os.Stat(filepath.Join(r.root, "sample", "releases", req.ID))
		assert.True(t, os.IsNotExist(err), "its release folder is gone")
		r.unlocked(t)
	})

	t.Run("a changed host key is refused and nothing changes", func(t *testing.T) {
		bad := *cfg
		bad.Targets = append([]config.Target(nil), cfg.Targets...)
		kh := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr8lyOVJ/yAzeFEXUWgcS6Nqq6UnKLu4Hc9Y6zXF0Oc\n", r.sshd.Port)), 0o600))
		bad.Targets[0].SSH.KnownHosts = kh
		res := r.deploy(t, &bad, v2, frontend(t, "v2"))
		err := stepErr(res.res, "lock:local")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "host key changed")
		s, _ := res.res.Step("lock:local")
		assert.Equal(t, 1, s.Attempts, "not retried")
		_, index := r.get(t, "/")
		assert.Contains(t, index, "frontend v1-after")
	})
}

func connectRig(t *testing.T, r *rig) *targetHost {
	key, err := os.ReadFile(r.sshd.KeyPath)
	require.NoError(t, err)
	h, err := connectTarget(t.Context(), r.sshd, key)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

func TestSwitchBackToTheWarmPreviousRelease(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1, v2 := r.image(t, "v1"), r.image(t, "v2")
	require.NoError(t, r.deploy(t, cfg, v1, frontend(t, "v1")).res.Err())
	require.NoError(t, r.deploy(t, cfg, v2, frontend(t, "v2")).res.Err())
	r.serves(t, "v2")

	back := func() *pipelines.Result {
		d, err := PrepareSwitchBack(Request{Config: cfg, Who: "tester@ci", ID: report.NewID(time.Now()),
			Resolver: &config.Resolver{LookupEnv: func(string) (string, bool) { return "", false }}})
		require.NoError(t, err)
		defer d.Close()
		return pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 2})
	}
	require.NoError(t, back().Err())
	r.serves(t, "v1")
	st := r.state(t)
	cur, _ := st.Current()
	prev, _ := st.Previous()
	assert.Equal(t, v1, cur.Image)
	assert.Equal(t, v2, prev.Image)
	r.unlocked(t)

	// And forth again: the two warm releases swap.
	require.NoError(t, back().Err())
	r.serves(t, "v2")

	// A previous release whose container was stopped (rollback window over)
	// is started again and health-gated before it serves.
	prev, _ = r.state(t).Previous()
	r.docker.MustRun(t, "stop", prev.Container)
	require.NoError(t, back().Err())
	r.serves(t, "v1")
}

func (r *rig) imageB(b *testing.B, version string) string { return r.image(b, version) }

func frontendB(b *testing.B, version string) string { return frontend(b, version) }

// deployB deploys for a benchmark and fails it on error.
func (r *rig) deployB(b *testing.B, cfg *config.Config, image, front string, force bool) *pipelines.Result {
	req := Request{Config: cfg, Image: image, FrontendDir: front, Who: "bench@ci", ID: report.NewID(time.Now()), Force: force,
		Resolver: &config.Resolver{LookupEnv: func(k string) (string, bool) { return "token-s3cret-value", k == "SAMPLE_TOKEN" }}}
	d, err := Prepare(req)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	res := pipelines.Run(b.Context(), d.Graph(), pipelines.Options{MaxWorkers: 4})
	if res.Err() != nil {
		b.Fatal(res.Err())
	}
	return res
}

func TestRollbackWindowStopsThePreviousBackend(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	cfg.Backend.RollbackWindow = config.Duration(time.Second)
	require.NoError(t, r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1")).res.Err())
	require.NoError(t, r.deploy(t, cfg, r.image(t, "v2"), frontend(t, "v2")).res.Err())
	prev, ok := r.state(t).Previous()
	require.True(t, ok)
	deadline := time.Now().Add(15 * time.Second)
	for slices.Contains(r.running(t), prev.Container) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	assert.NotContains(t, r.running(t), prev.Container, "stopped after the rollback window")
	cur, _ := r.state(t).Current()
	assert.Contains(t, r.running(t), cur.Container, "the current one runs on")
	r.serves(t, "v2")
}

func TestDeployToAnUnreachableHostChangesNothing(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	cfg.Targets[0].SSH.Port = testenv.FreePort(t) // nothing listens there
	cfg.Targets[0].SSH.ConnectTimeout = config.Duration(time.Second)
	run := r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1"))
	err := stepErr(run.res, "lock:local")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	s, _ := run.res.Step("lock:local")
	assert.Equal(t, 3, s.Attempts, "network errors are retried, a bounded number of times")
	for _, name := range []string{"revert:local", "unlock:local"} {
		st, _ := run.res.Step(name)
		assert.Equal(t, pipelines.Skipped, st.State, name)
	}
	_, statErr := os.Stat(filepath.Join(r.root, "sample"))
	assert.True(t, os.IsNotExist(statErr), "nothing was created on the target")
}

// Staging and production of one app share the host's nginx: everything
// either puts into it is named after its deployment (app, environment,
// root), so both deploy at once and each serves its own release.
func TestTwoDeploymentsOfOneAppOnOneNginx(t *testing.T) {
	r := newRig(t)
	prod := r.config(t, "")
	stagingPort := testenv.ReservePorts(t, 1)
	staging := r.config(t, `, "environment": "staging"`)
	staging.Targets[0].Root = r.root + "-staging"
	staging.Targets[0].Nginx.SitePath = filepath.Join(r.nginx.Dir, "sites", "sample-staging.conf")
	staging.Targets[0].Nginx.Listen = stagingPort
	staging.Backend.HostPortMin, staging.Backend.HostPortMax = r.portLo+20, r.portLo+40
	prod.Backend.HostPortMax = r.portLo + 19
	assert.NotEqual(t, NewLayout(prod, prod.Targets[0]).Name, NewLayout(staging, staging.Targets[0]).Name)
	v1, v2 := r.image(t, "v1"), r.image(t, "v2")
	for round, images := range [][2]string{{v1, v2}, {v2, v1}} {
		var wg sync.WaitGroup
		runs := make([]run, 2)
		for i, cfg := range []*config.Config{prod, staging} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runs[i] = r.deploy(t, cfg, images[i], frontend(t, "round"))
			}()
		}
		wg.Wait()
		for i, name := range []string{"production", "staging"} {
			require.NoError(t, runs[i].res.Err(), "round %d, %s", round, name)
		}
		want := map[int]string{r.AppPort: versionOf(images[0], v1), stagingPort: versionOf(images[1], v1)}
		for port, version := range want {
			deadline := time.Now().Add(3 * time.Second)
			for {
				resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", port))
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if got := strings.TrimSpace(string(body)); got == version || time.Now().After(deadline) {
					assert.Equal(t, version, got, "round %d, port %d", round, port)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

func versionOf(image, v1 string) string {
	if image == v1 {
		return "v1"
	}
	return "v2"
}

// What can be known before the lock is: a secret without a value, an
// image its registry does not have. Refused, and the target untouched.
func TestRefusedBeforeTheLock(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1 := r.image(t, "v1")
	req := Request{Config: cfg, Image: v1, FrontendDir: frontend(t, "v1"), Who: "tester@ci", ID: report.NewID(time.Now()),
		Resolver: &config.Resolver{LookupEnv: func(string) (string, bool) { return "", false }}}
	_, err := Prepare(req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "backend.secret_env.SAMPLE_TOKEN")
	assert.Contains(t, err.Error(), "the lock was not taken")

	req.Resolver = sampleResolver()
	req.Image = r.repo + "@sha256:" + strings.Repeat("0", 64)
	_, err = Prepare(req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the registry has no such manifest")

	_, err = os.Stat(filepath.Join(r.root, "sample"))
	assert.True(t, os.IsNotExist(err), "nothing on the target: %v", err)
}

// A backend that exits at once (Docker restarts it, again and again):
// the gate stops at the first exit or restart with the container's last
// lines, not at its deadline; the serving release never stopped.
func TestAGateStopsAtTheFirstCrash(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	cfg.Backend.HealthGate.Deadline = config.Duration(60 * time.Second)
	require.NoError(t, r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1")).res.Err())
	bad := r.deploy(t, cfg, r.image(t, "v2x", "-X main.crashAfter=50ms"), frontend(t, "v2x"))
	err := stepErr(bad.res, "health-gate:local")
	require.Error(t, err)
	assert.Regexp(t, `health gate: the new backend sample-\S+ (crashed and was restarted \d+ time\(s\) by Docker's restart policy|exited \(code 1\))`, err.Error())
	assert.Contains(t, err.Error(), "invalid memory address or nil pointer dereference (crashAfter)", "the log tail")
	gate, _ := bad.res.Step("health-gate:local")
	t.Logf("the gate stopped after %s (deadline %s)", gate.Duration().Round(time.Millisecond), cfg.Backend.HealthGate.Deadline)
	r.serves(t, "v1")
}

// A migrate_command that starts the server instead of migrating: bounded
// by the step's timeout, reported as such with its output, nothing
// switched.
func TestAMigrationThatServesIsStoppedAndSaysSo(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	require.NoError(t, r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1")).res.Err())
	serving := *cfg
	serving.Backend.MigrateCommand = []string{"/app/backend"} // the server, not its migrate command
	serving.Execution.StepTimeout = config.Duration(3 * time.Second)
	bad := r.deploy(t, &serving, r.image(t, "v2"), frontend(t, "v2"))
	err := stepErr(bad.res, "migrate")
	require.Error(t, err)
	// The time it ran is the step's timeout and a moment (more under load).
	assert.Regexp(t, "migration `/app/backend` failed; nothing was switched: stopped after [0-9]+s \\(the step's timeout, execution.step_timeout 3s, or a cancel\\)", err.Error())
	r.serves(t, "v1")
}

// Two apps on one host stay independent: each its own site, port,
// containers, state and lock; deploying one never touches the other.
func TestTwoAppsOnOneHost(t *testing.T) {
	r := newRig(t)
	sample := r.config(t, "")
	sample.Backend.HostPortMax = r.portLo + 19
	ledger := r.config(t, "")
	ledger.App = "ledger"
	ledgerPort := testenv.ReservePorts(t, 1)
	ledger.Targets[0].Nginx.SitePath = filepath.Join(r.nginx.Dir, "sites", "ledger.conf")
	ledger.Targets[0].Nginx.Listen = ledgerPort
	ledger.Backend.HostPortMin, ledger.Backend.HostPortMax = r.portLo+20, r.portLo+40
	t.Cleanup(func() {
		out, _ := r.docker.Run(context.Background(), "ps", "-aq", "--filter", "label=lawsker.base="+filepath.Join(r.root, "ledger"))
		for _, id := range strings.Fields(out) {
			_, _ = r.docker.Run(context.Background(), "rm", "-f", id)
		}
	})
	get := func(port int) string {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", port))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(body))
	}
	var wg sync.WaitGroup
	runs := make([]run, 2)
	for i, c := range []struct {
		cfg     *config.Config
		version string
	}{{sample, "v1"}, {ledger, "v2"}} {
		wg.Add(1)
		go func() { defer wg.Done(); runs[i] = r.deploy(t, c.cfg, r.image(t, c.version), frontend(t, c.version)) }()
	}
	wg.Wait()
	require.NoError(t, runs[0].res.Err())
	require.NoError(t, runs[1].res.Err())
	r.serves(t, "v1")
	assert.Equal(t, "v2", get(ledgerPort))
	ledgerContainers := r.docker.MustRun(t, "ps", "--filter", "label=lawsker.base="+filepath.Join(r.root, "ledger"), "--format", "{{.Names}}")
	require.NotEmpty(t, ledgerContainers)

	run := r.deploy(t, sample, r.image(t, "v2"), frontend(t, "v2"))
	require.NoError(t, run.res.Err())
	r.serves(t, "v2")
	assert.Equal(t, "v2", get(ledgerPort), "the other app still serves its release")
	assert.Equal(t, ledgerContainers, r.docker.MustRun(t, "ps", "--filter", "label=lawsker.base="+filepath.Join(r.root, "ledger"), "--format", "{{.Names}}"),
		"its containers untouched")
	_, err := os.Stat(filepath.Join(r.root, "ledger", ".lock"))
	assert.True(t, os.IsNotExist(err), "its lock free")
}
