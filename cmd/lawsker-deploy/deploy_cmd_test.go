package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestDeployReleasesLockRollbackCommands(t *testing.T) {
	h := testenv.StartTargetHost(t, "sample")
	v1 := h.Image(t, "./examples/sample/backend", "sample/backend", "v1")
	v2 := h.Image(t, "./examples/sample/backend", "sample/backend", "v2")
	ports := testenv.ReservePorts(t, 20)
	dir := t.TempDir()
	var mu sync.Mutex
	var events []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ Event, Status string }
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		events = append(events, ev.Event+" "+ev.Status)
		mu.Unlock()
	}))
	defer hook.Close()
	cfg := filepath.Join(dir, "deploy.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"version": 1, "app": "sample",
	  "targets": [{"name": "local", "host": "127.0.0.1",
	    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q},
	    "root": %q, "docker": {"host": %q},
	    "nginx": {"prefix": %q, "config": %q, "access_log": %q, "site_path": %q, "listen": %d, "listen_address": "127.0.0.1"}}],
	  "backend": {"image": "%s/sample/backend", "network": "host", "secret_env": {"SAMPLE_TOKEN": "env:SAMPLE_TOKEN"},
	    "health_gate": {"interval": "200ms", "deadline": "10s", "consecutive_passes": 2}, "host_port_min": %d, "host_port_max": %d},
	  "snapshots": {"enabled": false}, "rollback": {"watch_window": "1s"}, "notifications": {"webhook_url": %q},
	  "verification": {"thresholds": {"cpu_usage_percent": 100}}}`,
		h.SSHD.User, h.SSHD.Port, h.SSHD.KeyPath, h.SSHD.KnownHosts, h.Root, h.Docker.Host,
		h.Nginx.Dir, h.Nginx.Conf, h.Nginx.Dir+"/host-access.log", h.SitePath("sample"), h.AppPort, h.Registry.Addr, ports, ports+19, hook.URL)), 0o644))
	const token = "sample-token-never-printed"
	env := map[string]string{"SAMPLE_TOKEN": token}
	// version is what nginx serves, allowing a moment after a switch (just
	// after a reload, nginx's old worker may still take a connection).
	version := func(want string) string {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		deadline := time.Now().Add(3 * time.Second)
		for {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", h.AppPort))
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := strings.TrimSpace(string(b))
			if got == want || time.Now().After(deadline) {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	r := runIn(t, dir, env, "deploy", "--config", cfg, "--backend-image", v1, "--message", "first")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "local: deployed to "+v1+" (release ")
	assert.Contains(t, r.stderr, "[switch:local] ok in ")
	assert.Equal(t, "v1", version("v1"))

	r = runIn(t, dir, env, "deploy", "--json", "--config", cfg, "--backend-image", v2, "--message", "second")
	require.Equal(t, exitOK, r.code, r.stderr)
	var out deployResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	assert.Equal(t, "succeeded", out.Status)
	require.Len(t, out.Targets, 1)
	assert.NotEmpty(t, out.Targets[0].Previous)
	assert.Equal(t, "v2", version("v2"))

	r = runIn(t, dir, env, "deploy", "--config", cfg, "--backend-image", v2, "--message", "second")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "local: nothing to do: release ")

	r = runIn(t, dir, env, "releases", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "local:\n  not locked\n  RELEASE")
	lines := strings.Split(r.stdout, "\n")
	require.GreaterOrEqual(t, len(lines), 5)
	assert.Contains(t, lines[3], "current")
	assert.Contains(t, lines[3], `"second"`)
	assert.Contains(t, lines[4], "previous")

	r = runIn(t, dir, env, "rollback", "--config", cfg, "--previous")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "local: switched back to "+v1+" (release ")
	assert.Equal(t, "v1", version("v1"))

	mu.Lock()
	assert.Equal(t, []string{"deploy.succeeded succeeded", "deploy.succeeded succeeded", "deploy.succeeded succeeded", "rollback.manual succeeded"}, events,
		"a webhook event per deploy (the no-op too) and per rollback")
	mu.Unlock()

	r = runIn(t, dir, env, "lock", "status", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "local:\n  not locked")
	require.NoError(t, os.MkdirAll(filepath.Join(h.Root, "sample", ".lock"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(h.Root, "sample", ".lock", "lock.json"), []byte(`{"id":"dead","who":"bob@ci","when":"2026-11-26T00:00:00Z"}`), 0o644))
	r = runIn(t, dir, env, "deploy", "--config", cfg, "--backend-image", v2)
	assert.Equal(t, exitFailed, r.code)
	assert.Contains(t, r.stderr, "is locked by deploy dead by bob@ci since 2026-11-26T00:00:00Z")
	assert.NotContains(t, r.stdout+r.stderr, "rollback trigger", "refused at the lock: nothing was rolled back")
	r = runIn(t, dir, env, "lock", "status", "--config", cfg)
	assert.Equal(t, exitLocked, r.code, "locked: its own exit code")
	assert.Contains(t, r.stdout, "local:\n  locked: deploy dead by bob@ci")
	r = runIn(t, dir, env, "lock", "release", "--config", cfg)
	assert.Equal(t, exitFailed, r.code)
	assert.Contains(t, r.stdout, "held by deploy dead by bob@ci")
	assert.Contains(t, r.stdout, "pass --force to remove it")
	r = runIn(t, dir, env, "lock", "release", "--force", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "local:\n  not locked")

	r = runIn(t, dir, env, "deploy", "--config", cfg, "--backend-image", h.Registry.Addr+"/sample/backend:latest")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "must be pinned by digest")

	r = runIn(t, dir, env, "rollback", "--config", cfg)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "pass --previous (the warm previous release) or --snapshot ID")

	// verify against the deployment (v1 serves): the suite passes, and its
	// report, JUnit XML and Markdown summary are written; the summary is
	// appended to GITHUB_STEP_SUMMARY.
	summary := filepath.Join(dir, "step-summary.md")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	base := fmt.Sprintf("http://127.0.0.1:%d", h.AppPort)
	r = runIn(t, dir, env, "verify", "--config", cfg, "--base-url", base, "--category", "health,functional,performance")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "PASS  health      backend health /api/v1/health")
	assert.Contains(t, r.stdout, "PASS  functional  api GET /api/v1/health", "no endpoints listed: the health path, as the configuration states it")
	assert.NotContains(t, r.stdout, "upload", "no upload_path: no upload check (no app's API is assumed)")
	assert.Contains(t, r.stdout, "SKIP  performance baseline")
	reports, _ := filepath.Glob(filepath.Join(dir, "reports", "verify_*"))
	assert.Len(t, reports, 3, "json, xml, md")
	md, err := os.ReadFile(summary)
	require.NoError(t, err)
	assert.Contains(t, string(md), "## Verification of sample ("+base+"): passed")

	// The second run compares with the first as its baseline.
	r = runIn(t, dir, env, "verify", "--config", cfg, "--base-url", base, "--category", "performance")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "PASS  performance baseline")

	r = runIn(t, dir, env, "verify", "--json", "--config", cfg, "--base-url", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), "--category", "health")
	assert.Equal(t, exitFailed, r.code)
	var vr struct {
		Summary map[string]int `json:"summary"`
		Report  string         `json:"report"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &vr), r.stdout)
	assert.Equal(t, 1, vr.Summary["fail"])
	r = runIn(t, dir, env, "verify", "--config", cfg, "--category", "chaos")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unknown category "chaos"`)

	assert.NotContains(t, allOutput(t, r), token)
	for _, name := range []string{"reports", "logs"} {
		entries, err := os.ReadDir(filepath.Join(dir, name))
		require.NoError(t, err)
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, name, e.Name()))
			require.NoError(t, err)
			assert.NotContains(t, string(data), token, e.Name())
		}
	}
}
