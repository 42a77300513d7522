package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

// The real binary, killed with SIGKILL at every step boundary of a deploy
// in turn (and inside migrate, after the switch, inside the verification
// suite and inside a database restore), against real sshd, Docker, nginx
// and PostgreSQL, while a client polls through nginx the whole time. After
// each kill: the previous release answers (the target's dead man's switch
// puts it back when the kill came after the switch), `lock status` names
// the dead holder, `lock release --force` and the next deploy converge, and
// nothing is left over: no container, release folder, restore copy or lock,
// and the database's schema is the serving release's. The matrix is
// printed.
func TestKillAtEveryStepBoundary(t *testing.T) {
	bin := testenv.BuildStatic(t, "./cmd/lawsker-deploy", "lawsker-deploy")
	h := testenv.StartTargetHost(t, "sample")
	pg := testenv.StartPostgres(t)
	psql := func(db, sql string) string {
		return strings.TrimSpace(testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN(db), "-v", "ON_ERROR_STOP=1", "-tAc", sql))
	}
	psql("postgres", "CREATE DATABASE sample")
	// Enough rows that a restore takes a moment to kill it inside.
	psql("sample", "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 400000) g")
	images := map[string]string{}
	for _, v := range []string{"v1", "v2"} {
		images[v] = h.Image(t, "./examples/sample/backend", "sample/backend", v)
	}
	// v3 turns unhealthy after the switch: the watch rolls it back with
	// its database.
	images["v3"] = h.Image(t, "./examples/sample/backend", "sample/backend", "v3", "-X main.healthyAnswers=10")
	ports := testenv.ReservePorts(t, 20)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deploy.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"version": 1, "app": "sample",
	  "targets": [{"name": "local", "host": "127.0.0.1",
	    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q},
	    "root": %q, "docker": {"host": %q},
	    "nginx": {"prefix": %q, "config": %q, "access_log": %q, "site_path": %q, "listen": %d, "listen_address": "127.0.0.1"}}],
	  "backend": {"image": "%s/sample/backend", "network": "host", "migrate_command": ["/app/backend", "migrate"],
	    "health_gate": {"interval": "200ms", "deadline": "10s", "consecutive_passes": 2}, "host_port_min": %d, "host_port_max": %d},
	  "database": {"host": "127.0.0.1", "port": %d, "name": "sample", "user": %q, "password": "env:PG_PW", "sslmode": "disable", "url_env": "SAMPLE_DATABASE_URL",
	    "admin_user": %q, "admin_password": "env:PG_PW"},
	  "snapshots": {"store": "file://%s"},
	  "verification": {"categories": ["health"]},
	  "rollback": {"watch_window": "3s", "health_check_threshold": 3}}`,
		h.SSHD.User, h.SSHD.Port, h.SSHD.KeyPath, h.SSHD.KnownHosts, h.Root, h.Docker.Host,
		h.Nginx.Dir, h.Nginx.Conf, h.Nginx.Dir+"/host-access.log", h.SitePath("sample"), h.AppPort, h.Registry.Addr, ports, ports+19,
		pg.Port, pg.User, pg.User, filepath.Join(dir, "snapshots"))), 0o644))
	env := append(os.Environ(), "CI=true", "PG_PW="+pg.Password)
	command := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"--reports-dir", filepath.Join(dir, "reports"), "--logs-dir", filepath.Join(dir, "logs"), "--config", cfg}, args...)...)
		cmd.Env = env
		return cmd
	}
	run := func(args ...string) (int, string) {
		out, err := command(args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return code, string(out)
	}
	code, out := run("deploy", "--backend-image", images["v1"])
	require.Equal(t, 0, code, out)

	// The client: a fresh connection every 10 ms through nginx.
	var served, failed, held atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var polling sync.WaitGroup
	polling.Add(1)
	go func() {
		defer polling.Done()
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for deadline := time.Now().Add(20 * time.Minute); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", h.AppPort))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
					held.Add(1) // the maintenance hold of a rollback with its database
					continue
				}
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
				failures.Store(err.Error(), true)
				continue
			}
			served.Add(1)
		}
	}()
	var once sync.Once
	stopPolling := func() { once.Do(func() { close(stop); polling.Wait() }) }
	defer stopPolling()

	version := func() string {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", h.AppPort))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	// servesWithin waits (bounded) for one of want to answer steadily.
	servesWithin := func(want ...string) string {
		var got string
		for deadline := time.Now().Add(5 * time.Second); ; {
			got = version()
			if slices.Contains(want, got) && version() == got && version() == got {
				return got
			}
			if time.Now().After(deadline) {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	base := filepath.Join(h.Root, "sample")
	type state struct {
		Releases []struct {
			ID, Image, Container, Status string
			Verified                     bool
		}
		InProgress *json.RawMessage `json:"in_progress"`
	}
	readState := func() state {
		var st state
		data, err := os.ReadFile(filepath.Join(base, "state.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &st))
		return st
	}
	versionOf := func(image string) string {
		for v, img := range images {
			if img == image {
				return v
			}
		}
		return "?"
	}
	// leftovers lists what a converged target must not have.
	leftovers := func() []string {
		st := readState()
		var left []string
		if st.InProgress != nil {
			left = append(left, "journal")
		}
		want := map[string]bool{}
		dirs := map[string]bool{}
		for _, r := range st.Releases {
			dirs[r.ID] = true
			if r.Status != "retired" {
				want[r.Container] = true
			}
		}
		for _, c := range strings.Fields(h.Docker.MustRun(t, "ps", "-a", "--filter", "label=lawsker.base="+base, "--format", "{{.Names}}")) {
			if !want[c] {
				left = append(left, "container "+c)
			}
		}
		entries, _ := os.ReadDir(filepath.Join(base, "releases"))
		for _, e := range entries {
			if !dirs[e.Name()] {
				left = append(left, "folder "+e.Name())
			}
		}
		if _, err := os.Stat(filepath.Join(base, ".lock")); err == nil {
			left = append(left, "lock")
		}
		if copies := psql("postgres", `SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'sample\_restore\_%'`); copies != "" {
			left = append(left, "restore copy "+copies)
		}
		return left
	}
	restoreCopy := func() bool {
		return psql("postgres", `SELECT count(*) FROM pg_database WHERE datname LIKE 'sample\_restore\_%'`) != "0"
	}

	type kill struct {
		at    string        // the step whose start is the boundary
		after time.Duration // inside the step: this long after its start
		image string
		until func() bool // inside the step: kill once this holds
		// serving is who may answer right after the kill.
		serving []string
	}
	kills := []kill{
		{at: "lock:local", image: "v2", serving: []string{"v1"}},
		{at: "prepare:local", image: "v2", serving: []string{"v1"}},
		{at: "pull:local", image: "v2", serving: []string{"v1"}},
		{at: "snapshot-before", image: "v2", serving: []string{"v1"}},
		{at: "migrate", image: "v2", serving: []string{"v1"}},
		{at: "migrate", after: 250 * time.Millisecond, image: "v2", serving: []string{"v1"}},
		{at: "start-backend:local", image: "v2", serving: []string{"v1"}},
		{at: "health-gate:local", image: "v2", serving: []string{"v1"}},
		{at: "switch:local", image: "v2", serving: []string{"v1"}},
		{at: "switch:local", after: 150 * time.Millisecond, image: "v2", serving: []string{"v1"}},
		{at: "verify:local", image: "v2", serving: []string{"v1"}},
		{at: "verify-release", image: "v2", serving: []string{"v1"}},
		{at: "verify-release", after: 1500 * time.Millisecond, image: "v2", serving: []string{"v1"}},
		{at: "swap-database", image: "v3", until: restoreCopy, serving: []string{"v1"}},
		{at: "prune:local", image: "v2", serving: []string{"v1", "v2"}},
	}
	var matrix []string
	matrix = append(matrix, fmt.Sprintf("%-38s  %-8s  %-10s  %-10s  %s", "KILLED AT", "LOCKED", "SERVING", "CONVERGED", "LEFT OVER AFTER CONVERGE"))
	for _, k := range kills {
		name := k.at
		if k.after > 0 {
			name += fmt.Sprintf(" (+%s, inside)", k.after)
		}
		if k.until != nil {
			name += " (inside pg_restore)"
		}
		cmd := command("deploy", "--backend-image", images[k.image], "--message", "killed at "+name)
		stderr := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = io.Discard, stderr
		require.NoError(t, cmd.Start())
		waitForWithin(t, 60*time.Second, func() bool { return strings.Contains(stderr.String(), "["+k.at+"] started") }, name+": "+stderr.String())
		time.Sleep(k.after)
		if k.until != nil {
			waitForWithin(t, 30*time.Second, k.until, name+": no restore copy appeared")
		}
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()

		serving := servesWithin(k.serving...)
		assert.Contains(t, k.serving, serving, "%s: right after the kill", name)
		_, lockOut := run("lock", "status")
		locked := "no"
		if strings.Contains(lockOut, "locked: deploy ") {
			locked = "yes"
			assert.Contains(t, lockOut, "killed at "+name, "%s: the dead holder is named", name)
		} else {
			assert.Equal(t, "lock:local", k.at, "%s: only a kill before the lock leaves it free: %s", name, lockOut)
		}
		code, out := run("lock", "release", "--force")
		require.Equal(t, 0, code, out)
		code, out = run("deploy", "--backend-image", images[serving])
		require.Equal(t, 0, code, "%s: the next deploy converges: %s", name, out)
		converged := "nothing"
		if strings.Contains(out, "local: undid the interrupted run") {
			converged = "undone"
		}
		st := readState()
		var cur string
		for _, r := range st.Releases {
			if r.Status == "current" {
				cur = versionOf(r.Image)
				assert.True(t, r.Verified, "%s: the current release is a verified one", name)
			}
		}
		assert.Equal(t, serving, cur, name)
		assert.Equal(t, serving, servesWithin(serving), "%s: after converging", name)
		assert.Equal(t, serving, psql("sample", "SELECT version_num FROM alembic_version"), "%s: the database's schema is the serving release's", name)
		left := leftovers()
		assert.Empty(t, left, name)
		matrix = append(matrix, fmt.Sprintf("%-38s  %-8s  %-10s  %-10s  %s", name, locked, serving, converged, strings.Join(append(left, "-")[:max(len(left), 1)], ", ")))
		if serving != "v1" { // the release was kept: back to v1 for the next kill
			// v2's migration changed the schema, so the switch back is
			// refused; the snapshot it names brings v1 back with its
			// database.
			code, out = run("rollback", "--previous")
			require.NotEqual(t, 0, code, out)
			m := regexp.MustCompile("Run `lawsker-deploy rollback --snapshot (snap_[0-9a-f_]+)`").FindStringSubmatch(out)
			require.NotNil(t, m, "the refusal names the snapshot: %s", out)
			code, out = run("rollback", "--snapshot", m[1])
			require.Equal(t, 0, code, out)
			require.Equal(t, "v1", servesWithin("v1"), out)
		}
	}
	stopPolling()
	var errs []string
	failures.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
	sort.Strings(errs)
	t.Logf("kill matrix (%d kills; the client's requests through nginx: %d answered, %d failed, %d maintenance answers of the rollbacks' holds):\n%s", len(kills), served.Load(), failed.Load(), held.Load(), strings.Join(matrix, "\n"))
	assert.Zero(t, failed.Load(), "requests through nginx failed: %v", errs)
	assert.Positive(t, served.Load())
}

func waitForWithin(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
