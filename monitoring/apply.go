package monitoring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Check runs promtool over the rendered files (config, which also checks
// the rule files it names, then each rule file): nothing reaches a target
// before it passes.
func Check(ctx context.Context, f Files) error {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		return errors.New("promtool is not installed here: it checks the Prometheus configuration before it reaches the target (Debian: apt install prometheus)")
	}
	dir, err := os.MkdirTemp("", "lawsker-monitoring-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := f.Write(dir); err != nil {
		return err
	}
	args := [][]string{{"check", "config", filepath.Join(dir, "prometheus.yml")}}
	for _, n := range f.Names() {
		if strings.HasPrefix(n, "rules/") {
			args = append(args, []string{"check", "rules", filepath.Join(dir, filepath.FromSlash(n))})
		}
	}
	for _, a := range args {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := exec.CommandContext(cctx, promtool, a...).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("promtool %s %s refused it (nothing was applied):\n%s", a[0], a[1], strings.ReplaceAll(strings.TrimSpace(string(out)), dir+"/", ""))
		}
	}
	return nil
}

// Docker is how Apply runs containers on the target (docker argv with the
// target's DOCKER_HOST).
type Docker interface {
	// Cmd returns the docker argv for args.
	Cmd(args ...string) []string
}

// Target is where monitoring runs: the first target.
type Target struct {
	Host *remote.Host
	Base string // <root>/<app>
	App  string
	// Name is the deployment's (app, environment, root: deploy.Layout's):
	// its containers are named after it, so two deployments of one app
	// on a host (staging and production) run their own.
	Name   string
	Docker Docker
}

// ContainerName is the target's Prometheus or Grafana container (role
// "prometheus" or "grafana").
func ContainerName(t Target, role string) string {
	if t.Name == "" {
		return t.App + "-" + role
	}
	return t.Name + "-" + role
}

// dropLegacy removes the container an earlier lawsker-deploy named after
// the app alone (<app>-<role>), when it is this deployment's (its
// lawsker.base label): the renamed one takes its place and its port.
func dropLegacy(ctx context.Context, t Target, role string) {
	old := t.App + "-" + role
	if old == ContainerName(t, role) {
		return
	}
	base, err := t.Host.Run(ctx, t.Docker.Cmd("inspect", "--format", `{{index .Config.Labels "lawsker.base"}}`, old)...)
	if err == nil && strings.TrimSpace(base) == t.Base {
		_, _ = t.Host.Run(ctx, t.Docker.Cmd("rm", "-f", old)...)
	}
}

// Dir is the monitoring folder on the target.
func Dir(base string) string { return path.Join(base, "monitoring") }

// Result says what Apply did.
type Result struct {
	Files      []string `json:"files"`
	Prometheus string   `json:"prometheus"` // started, reloaded
	Grafana    string   `json:"grafana,omitempty"`
	// LogStores is what became of each target's log store (monitoring.logs):
	// running, started, restarted, or why it is not running.
	LogStores map[string]string `json:"log_stores,omitempty"`
}

// Apply writes the checked files to the target (each atomically; the
// previous set kept under previous/), starts Prometheus (network host,
// lifecycle API on) or reloads it without a restart, and starts or
// restarts Grafana with its provisioning and the admin password from a
// 0600 env file. It returns once Prometheus answers with the new
// configuration.
func Apply(ctx context.Context, cfg *config.Config, res *config.Resolver, t Target, f Files) (*Result, error) {
	m := cfg.Monitoring
	dir := Dir(t.Base)
	if _, err := t.Host.Run(ctx, "sh", "-c", `mkdir -p "$1" && rm -rf "$1/previous" && mkdir -p "$1/previous" && for x in prometheus.yml rules grafana; do [ -e "$1/$x" ] && cp -a "$1/$x" "$1/previous/"; done; true`, "sh", dir); err != nil {
		return nil, fmt.Errorf("keeping the previous monitoring configuration: %w", err)
	}
	rs := &Result{}
	for _, n := range f.Names() {
		if err := t.Host.WriteFile(path.Join(dir, n), f[n], 0o644); err != nil {
			return nil, err
		}
		rs.Files = append(rs.Files, n)
	}
	listen, err := listenAddr(m.PrometheusURL)
	if err != nil {
		return nil, err
	}
	name := ContainerName(t, "prometheus")
	dropLegacy(ctx, t, "prometheus")
	running, _ := t.Host.Run(ctx, t.Docker.Cmd("inspect", "--format", "{{.State.Running}}", name)...)
	if strings.TrimSpace(running) == "true" {
		if err := post(ctx, t.Host, listen, "/-/reload"); err != nil {
			return nil, fmt.Errorf("reloading Prometheus: %w", err)
		}
		rs.Prometheus = "reloaded"
	} else {
		_, _ = t.Host.Run(ctx, t.Docker.Cmd("rm", "-f", name)...)
		args := t.Docker.Cmd("run", "-d", "--name", name, "--restart", "unless-stopped", "--network", "host",
			"--label", "lawsker.app="+t.App, "--label", "lawsker.base="+t.Base, "--label", "lawsker.role=prometheus",
			"-v", dir+":/etc/lawsker-monitoring:ro", "--entrypoint", "prometheus", m.PrometheusImage,
			"--config.file=/etc/lawsker-monitoring/prometheus.yml", "--storage.tsdb.path=/tmp/prometheus",
			"--web.listen-address="+listen, "--web.enable-lifecycle")
		if _, err := t.Host.Run(ctx, args...); err != nil {
			return nil, fmt.Errorf("starting Prometheus (%s): %w", m.PrometheusImage, err)
		}
		rs.Prometheus = "started"
	}
	if err := waitLoaded(ctx, t.Host, listen, f["prometheus.yml"], m.ScrapeInterval.D()); err != nil {
		return nil, err
	}
	if m.GrafanaImage != "" && m.GrafanaImage != "none" {
		if rs.Grafana, err = grafana(ctx, cfg, res, t, dir); err != nil {
			return rs, err
		}
	}
	return rs, nil
}

func grafana(ctx context.Context, cfg *config.Config, res *config.Resolver, t Target, dir string) (string, error) {
	m := cfg.Monitoring
	if m.GrafanaAdminPassword.IsZero() {
		return "", errors.New("monitoring.grafana_admin_password is required to run Grafana (or set grafana_image to \"none\")")
	}
	pw, err := res.Resolve(m.GrafanaAdminPassword)
	if err != nil {
		return "", fmt.Errorf("monitoring.grafana_admin_password: %w", err)
	}
	u, err := listenAddr(m.GrafanaURL)
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(u)
	env := fmt.Sprintf("GF_SECURITY_ADMIN_PASSWORD=%s\nGF_SERVER_HTTP_PORT=%s\nGF_PATHS_PROVISIONING=/etc/lawsker-monitoring/grafana/provisioning\n", pw, port)
	if m.LogsOn() { // the log store's data source
		env += "GF_INSTALL_PLUGINS=" + LogsPlugin + "\n"
	}
	if err := t.Host.WriteFile(path.Join(dir, "grafana.env"), []byte(env), 0o600); err != nil {
		return "", err
	}
	name := ContainerName(t, "grafana")
	dropLegacy(ctx, t, "grafana")
	_, _ = t.Host.Run(ctx, t.Docker.Cmd("rm", "-f", name)...)
	if _, err := t.Host.Run(ctx, t.Docker.Cmd("run", "-d", "--name", name, "--restart", "unless-stopped", "--network", "host",
		"--label", "lawsker.app="+t.App, "--label", "lawsker.base="+t.Base, "--label", "lawsker.role=grafana",
		"--env-file", path.Join(dir, "grafana.env"), "-v", dir+":/etc/lawsker-monitoring:ro", m.GrafanaImage)...); err != nil {
		return "", fmt.Errorf("starting Grafana (%s): %w", m.GrafanaImage, err)
	}
	return "started", nil
}

func tunnel(h *remote.Host) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return h.DialTCP(ctx, addr) },
		DisableKeepAlives: true,
	}}
}

func post(ctx context.Context, h *remote.Host, addr, p string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+p, nil)
	if err != nil {
		return err
	}
	resp, err := tunnel(h).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", p, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// waitLoaded waits until Prometheus runs the configuration just written
// and has scraped every target once: /api/v1/targets names the backend's
// address and no target's health is still "unknown" (the suite then finds
// them up, or a real failure).
func waitLoaded(ctx context.Context, h *remote.Host, addr string, want []byte, interval time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute+3*interval)
	defer cancel()
	client := tunnel(h)
	marker := ""
	for _, line := range strings.Split(string(want), "\n") {
		if strings.Contains(line, "- targets:") {
			// The first backend address: the loaded configuration scrapes it.
			marker = strings.Trim(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- targets:")), `[]"`)
			marker, _, _ = strings.Cut(marker, `"`)
			break
		}
	}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/targets?state=active", nil)
		resp, err := client.Do(req)
		if err == nil {
			var body struct {
				Data struct {
					ActiveTargets []struct {
						ScrapeURL string `json:"scrapeUrl"`
						Health    string `json:"health"`
					} `json:"activeTargets"`
				} `json:"data"`
			}
			derr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
			resp.Body.Close()
			found, scraped := false, derr == nil
			for _, at := range body.Data.ActiveTargets {
				found = found || strings.Contains(at.ScrapeURL, "//"+marker+"/")
				scraped = scraped && at.Health != "unknown"
			}
			if found && scraped {
				return nil
			}
			last = fmt.Sprintf("%s, backend target found: %v, all scraped once: %v", resp.Status, found, scraped)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Prometheus at %s did not load and scrape the new configuration in time (last: %s)", addr, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Reload asks the running Prometheus to reload its configuration (after a
// restore of the monitoring folder).
func Reload(ctx context.Context, h *remote.Host, cfg *config.Config) error {
	listen, err := listenAddr(cfg.Monitoring.PrometheusURL)
	if err != nil {
		return err
	}
	return post(ctx, h, listen, "/-/reload")
}
