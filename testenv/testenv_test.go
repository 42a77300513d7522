package testenv

import (
	"context"
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
)

// Each test starts one real server and checks a real round trip with it, so
// a broken install fails here with a plain message before feature tests.

func TestPostgres(t *testing.T) {
	pg := StartPostgres(t)
	out := MustRun(t, Bin(t, "psql"), pg.DSN("postgres"), "-tAc", "SELECT 40 + 2")
	assert.Equal(t, "42\n", out)
	dump := filepath.Join(t.TempDir(), "db.dump")
	MustRun(t, Bin(t, "pg_dump"), "-Fc", "-f", dump, pg.DSN("postgres"))
	st, err := os.Stat(dump)
	require.NoError(t, err)
	assert.Greater(t, st.Size(), int64(0))
}

func TestRedis(t *testing.T) {
	r := StartRedis(t)
	require.NoError(t, redisPing(t.Context(), r.Addr))
}

func TestDockerRunsImportedImageOnHostNetwork(t *testing.T) {
	d := DockerEngine(t)
	bin := BuildStatic(t, "./testenv/testdata/hello", "hello")
	ref := fmt.Sprintf("lawsker-testenv/hello:%d", time.Now().UnixNano())
	d.ImportBinary(t, bin, ref)
	out := d.MustRun(t, "run", "--rm", "--network", "host", ref, "/app/hello", "from", "docker")
	assert.Equal(t, "hello from docker", out)
}

func TestRegistryTakesAPush(t *testing.T) {
	reg := StartRegistry(t)
	d := DockerEngine(t)
	bin := BuildStatic(t, "./testenv/testdata/hello", "hello")
	ref := fmt.Sprintf("%s/testenv/hello:v1", reg.Addr)
	d.ImportBinary(t, bin, ref)
	d.MustRun(t, "push", ref)
	resp, err := http.Get("http://" + reg.Addr + "/v2/testenv/hello/tags/list")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.JSONEq(t, `{"name":"testenv/hello","tags":["v1"]}`, string(body))
}

func TestSSHDAcceptsKeyWithHostKeyChecked(t *testing.T) {
	s := StartSSHD(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := s.SSH(ctx, "echo", "on-target")
	require.NoError(t, err, s.Log())
	assert.Equal(t, "on-target\n", out)

	// A known_hosts with another key is refused: checking is really on.
	other := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(other, []byte(fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr8lyOVJ/yAzeFEXUWgcS6Nqq6UnKLu4Hc9Y6zXF0Oc\n", s.Port)), 0o644))
	s2 := *s
	s2.KnownHosts = other
	_, err = s2.SSH(ctx, "true")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "REMOTE HOST IDENTIFICATION HAS CHANGED")
}

func TestNginxServesAndReloads(t *testing.T) {
	n := StartNginx(t, "")
	require.NoError(t, os.WriteFile(filepath.Join(n.Dir, "www", "index.html"), []byte("v1"), 0o644))
	get := func() string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", n.Port))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	assert.Equal(t, "v1", get())
	// A broken config fails nginx -t; the running server is untouched.
	good, err := os.ReadFile(n.Conf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(n.Conf, []byte(strings.Replace(string(good), "root ", "rooot ", 1)), 0o644))
	err = n.Test(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown directive "rooot"`)
	require.NoError(t, os.WriteFile(n.Conf, good, 0o644))
	require.NoError(t, n.Reload(t.Context()))
	assert.Equal(t, "v1", get())
}

func TestS3AnswersSignedAPI(t *testing.T) {
	s := StartS3(t)
	s.CreateBucket(t, "snapshots")
	// Unsigned requests are refused: auth is on. Signed access is exercised
	// by the snapshot store's tests through gocloud.dev/blob.
	resp, err := http.Get(s.Endpoint + "/snapshots")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, string(body), "AccessDenied")
}

func TestPebbleServesACMEDirectory(t *testing.T) {
	p := StartPebble(t, PebbleOptions{})
	resp, err := p.HTTPClient().Get(p.Directory)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `"newAccount"`)
	assert.Contains(t, string(body), `"newOrder"`)
}

func TestPrometheusAndPromtool(t *testing.T) {
	p := StartPrometheus(t, "")
	resp, err := http.Get(p.URL + "/api/v1/status/buildinfo")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = Promtool(ctx, t, "check", "config", p.Conf)
	require.NoError(t, err)
	bad := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(bad, []byte("groups:\n- name: x\n  rules:\n  - alert: A\n    expr: up ==\n"), 0o644))
	_, err = Promtool(ctx, t, "check", "rules", bad)
	require.Error(t, err)
}

func TestWrkIsInstalled(t *testing.T) {
	out, _ := Run(t.Context(), Bin(t, "wrk"), "--version")
	assert.Contains(t, out, "wrk")
}
