package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func parse(t *testing.T, extra string) *config.Config {
	l, err := config.Parse([]byte(`{"version": 1, "app": "sample", "environment": "production",
	  "targets": [{"name": "local", "host": "127.0.0.1"}], "backend": {"image": "127.0.0.1:5000/sample"},
	  "monitoring": {"enabled": true, "scrape_interval": "1s"`+extra+`}}`), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

// startBackend runs the sample backend here on a free port.
func startBackend(t *testing.T) string {
	bin := testenv.BuildStatic(t, "./examples/sample/backend", "backend", "-X main.version=v1")
	port := testenv.FreePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	testenv.Start(t, "sample backend", cmd)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return testenv.TCPReady(addr)(context.Background()) == nil }, 10*time.Second, 50*time.Millisecond)
	return addr
}

func getJSON(t *testing.T, url string, v any) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	require.NoError(t, json.Unmarshal(data, v), "%s", data)
}

// Real Prometheus loads the rendered configuration and rules and scrapes
// the backend; promtool passes them and refuses a broken rule.
func TestRenderedConfigLoadsAndScrapes(t *testing.T) {
	backend := startBackend(t)
	cfg := parse(t, "")
	files, err := Render(cfg, Input{Backends: []string{backend}, Release: "20261126_040000_abcdef"})
	require.NoError(t, err)
	require.NoError(t, Check(t.Context(), files))
	assert.Contains(t, string(files["rules/lawsker.yml"]), "> 0.005\n", "error_rate_threshold")
	assert.Contains(t, string(files["rules/lawsker.yml"]), "> 1\n", "p95 limit: verification.thresholds.response_time_ms")
	var dash map[string]any
	require.NoError(t, json.Unmarshal(files["grafana/dashboards/lawsker.json"], &dash))
	assert.Len(t, dash["panels"], 6)

	p := testenv.StartPrometheusFiles(t, files)
	require.Eventually(t, func() bool {
		var targets struct {
			Data struct {
				ActiveTargets []struct {
					Labels map[string]string `json:"labels"`
					Health string            `json:"health"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		getJSON(t, p.URL+"/api/v1/targets", &targets)
		for _, at := range targets.Data.ActiveTargets {
			if at.Labels["job"] == "backend" && at.Health == "up" {
				return at.Labels["release"] == "20261126_040000_abcdef"
			}
		}
		return false
	}, 30*time.Second, 250*time.Millisecond, "Prometheus scrapes the backend")
	var rules struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name string `json:"name"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	getJSON(t, p.URL+"/api/v1/rules", &rules)
	require.Len(t, rules.Data.Groups, 1)
	var names []string
	for _, r := range rules.Data.Groups[0].Rules {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"BackendDown", "HighErrorRate", "HighLatencyP95", "CertificateExpiringSoon", "DiskAlmostFull"}, names)

	broken := filepath.Join(t.TempDir(), "extra.yml")
	require.NoError(t, os.WriteFile(broken, []byte("groups:\n  - name: mine\n    rules:\n      - alert: Broken\n        expr: rate(http_requests_total[5m] > 1\n"), 0o644))
	bad, err := Render(parse(t, fmt.Sprintf(`, "extra_rules": %q`, broken)), Input{Backends: []string{backend}})
	require.NoError(t, err)
	err = Check(t.Context(), bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused it (nothing was applied)")
	assert.Contains(t, err.Error(), "rules/extra.yml")

	_, err = Render(cfg, Input{})
	assert.ErrorContains(t, err, "no serving backend to scrape")
}

type docker struct{ host string }

func (d docker) Cmd(args ...string) []string {
	return append([]string{"docker", "-H", d.host}, args...)
}

// Apply on a target: Prometheus runs as a container (network host), a
// second apply reloads it without a restart; the previous files are kept.
func TestApplyRunsAndReloadsPrometheus(t *testing.T) {
	h := testenv.StartTargetHost(t, "sample")
	image := "lawsker-test/prometheus:" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	h.Docker.ImportPrometheus(t, image)
	backend := startBackend(t)
	promPort := testenv.FreePort(t)
	cfg := parse(t, fmt.Sprintf(`, "prometheus_url": "http://127.0.0.1:%d", "prometheus_image": %q, "grafana_image": "none"`, promPort, image))
	key, err := os.ReadFile(h.SSHD.KeyPath)
	require.NoError(t, err)
	host, err := remote.Connect(t.Context(), remote.Endpoint{Host: h.SSHD.Host, Port: h.SSHD.Port, User: h.SSHD.User, PrivateKey: key, KnownHosts: h.SSHD.KnownHosts}, 1)
	require.NoError(t, err)
	defer host.Close()
	tgt := Target{Host: host, Base: filepath.Join(h.Root, "sample"), App: "sample-" + fmt.Sprint(promPort), Name: "sample_staging_" + fmt.Sprint(promPort), Docker: docker{h.Docker.Host}}
	name := ContainerName(tgt, "prometheus")
	assert.Equal(t, tgt.Name+"-prometheus", name, "named after the deployment, not the app")
	t.Cleanup(func() { _, _ = h.Docker.Run(context.Background(), "rm", "-f", name, tgt.App+"-prometheus") })
	// An earlier lawsker-deploy's container of this deployment, named
	// after the app alone, holding the port: the renamed one replaces it.
	h.Docker.MustRun(t, "run", "-d", "--name", tgt.App+"-prometheus", "--network", "host", "--label", "lawsker.base="+tgt.Base,
		"--entrypoint", "prometheus", image, "--config.file=/dev/null", "--storage.tsdb.path=/tmp/prometheus", "--web.listen-address=127.0.0.1:"+fmt.Sprint(promPort))

	files, err := Render(cfg, Input{Backends: []string{backend}, Release: "r1"})
	require.NoError(t, err)
	res, err := Apply(t.Context(), cfg, &config.Resolver{}, tgt, files)
	require.NoError(t, err)
	assert.Equal(t, "started", res.Prometheus)
	started := h.Docker.MustRun(t, "inspect", "--format", "{{.State.StartedAt}}", name)
	_, err = h.Docker.Run(t.Context(), "inspect", tgt.App+"-prometheus")
	assert.Error(t, err, "the app-named container of this deployment is gone")

	other := startBackend(t)
	files, err = Render(cfg, Input{Backends: []string{other}, Release: "r2"})
	require.NoError(t, err)
	res, err = Apply(t.Context(), cfg, &config.Resolver{}, tgt, files)
	require.NoError(t, err)
	assert.Equal(t, "reloaded", res.Prometheus)
	assert.Equal(t, started, h.Docker.MustRun(t, "inspect", "--format", "{{.State.StartedAt}}", name), "reloaded, not restarted")
	prev, err := os.ReadFile(filepath.Join(Dir(tgt.Base), "previous", "prometheus.yml"))
	require.NoError(t, err)
	assert.Contains(t, string(prev), backend, "the previous configuration is kept")
	assert.Eventually(t, func() bool {
		var targets struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL string `json:"scrapeUrl"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/targets", promPort), &targets)
		for _, at := range targets.Data.ActiveTargets {
			if at.ScrapeURL == "http://"+other+"/metrics" {
				return true
			}
		}
		return false
	}, 20*time.Second, 250*time.Millisecond, "the reloaded Prometheus scrapes the new backend")
}
