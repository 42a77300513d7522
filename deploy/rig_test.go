package deploy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// rig is a target host on this machine (testenv.TargetHost) with the
// sample app's images.
type rig struct {
	*testenv.TargetHost
	sshd   *testenv.SSHD
	docker *testenv.Docker
	reg    *testenv.Registry
	nginx  *testenv.Nginx
	root   string
	repo   string
	portLo int
}

const hostileEnv = `it's "quoted" $(not run) ` + "`x`" + ` ; rm -rf / #`

func newRig(t testing.TB) *rig {
	h := testenv.StartTargetHost(t, "sample")
	return &rig{TargetHost: h, sshd: h.SSHD, docker: h.Docker, reg: h.Registry, nginx: h.Nginx, root: h.Root,
		repo: h.Registry.Addr + "/sample/backend", portLo: testenv.ReservePorts(t, 40)}
}

func (r *rig) image(t testing.TB, version string, flags ...string) string {
	return r.Image(t, "./examples/sample/backend", "sample/backend", version, flags...)
}

func (r *rig) config(t testing.TB, extra string) *config.Config {
	js := fmt.Sprintf(`{"version": 1, "app": "sample",
	  "targets": [{"name": "local", "host": "127.0.0.1",
	    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q, "connect_timeout": "5s"},
	    "root": %q, "docker": {"host": %q},
	    "nginx": {"prefix": %q, "config": %q, "access_log": %q, "site_path": %q, "listen": %d, "listen_address": "127.0.0.1"}}],
	  "registry": {"host": %q},
	  "backend": {"image": %q, "network": "host", "migrate_command": ["/app/backend", "migrate"], "routes": ["/api/"],
	    "env": {"SAMPLE_GREETING": %q}, "secret_env": {"SAMPLE_TOKEN": "env:SAMPLE_TOKEN"},
	    "health_gate": {"interval": "200ms", "deadline": "10s", "consecutive_passes": 2},
	    "host_port_min": %d, "host_port_max": %d, "keep_releases": 3},
	  "frontend": {},
	  "snapshots": {"enabled": false},
	  "execution": {"max_workers": 4}%s}`,
		r.sshd.User, r.sshd.Port, r.sshd.KeyPath, r.sshd.KnownHosts, r.root, r.docker.Host,
		r.nginx.Dir, r.nginx.Conf, r.nginx.Dir+"/host-access.log", r.SitePath("sample"), r.AppPort,
		r.reg.Addr, r.repo, hostileEnv, r.portLo, r.portLo+40, extra)
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func frontend(t testing.TB, version string) string {
	dir := t.TempDir()
	files := map[string]string{
		"index.html":                 "<!doctype html><title>sample</title><p>frontend " + version + "</p>",
		"assets/app.3f9a1c2e.js":     "console.log('same in every version')",
		"assets/" + version + ".css": "body{}",
		`odd name 'q' "dq" $(x).txt`: "hostile file name",
	}
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

type run struct {
	d   *Deployment
	res *pipelines.Result
}

func (r *rig) deploy(t *testing.T, cfg *config.Config, image, front string, tweak ...func(*Request)) run {
	req := Request{Config: cfg, Image: image, FrontendDir: front, Who: "tester@ci", Message: `release "notes" $(x); rm -rf /`,
		ID: report.NewID(time.Now()), Resolver: sampleResolver()}
	for _, f := range tweak {
		f(&req)
	}
	d, err := Prepare(req)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	res := pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 4})
	return run{d, res}
}

func (r *rig) get(t *testing.T, path string) (int, string) {
	// A fresh connection each time: a kept-alive one may still reach an old
	// nginx worker just after a reload.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", r.AppPort, path))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// serves checks nginx serves the version, allowing a moment after a switch:
// just after a reload, nginx's old worker may still take a connection.
func (r *rig) serves(t *testing.T, version string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, body := r.get(t, "/api/v1/version")
		_, index := r.get(t, "/")
		if (code == http.StatusOK && body == version && strings.Contains(index, "frontend "+version)) || time.Now().After(deadline) {
			assert.Equal(t, http.StatusOK, code)
			assert.Equal(t, version, body, "backend through nginx")
			assert.Contains(t, index, "frontend "+version, "frontend through nginx")
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rig) state(t *testing.T) *State {
	data, err := os.ReadFile(filepath.Join(r.root, "sample", "state.json"))
	require.NoError(t, err)
	var s State
	require.NoError(t, jsonUnmarshal(data, &s))
	return &s
}

func (r *rig) running(t *testing.T) []string {
	out := r.docker.MustRun(t, "ps", "--filter", "label=lawsker.base="+filepath.Join(r.root, "sample"), "--format", "{{.Names}}")
	names := strings.Fields(out)
	return names
}

func (r *rig) unlocked(t *testing.T) {
	t.Helper()
	_, err := os.Stat(filepath.Join(r.root, "sample", ".lock"))
	assert.True(t, os.IsNotExist(err), "the lock is released")
}

func stepErr(res *pipelines.Result, name string) error {
	s, _ := res.Step(name)
	return s.Err
}
