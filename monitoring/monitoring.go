// Package monitoring renders and applies the monitoring of an app:
// Prometheus configuration (the backend's /metrics, node_exporter and the
// nginx exporter when configured), alert rules (backend down, error rate,
// p95 latency, certificate expiry, disk), Grafana provisioning (the
// Prometheus datasource and a dashboard). Everything is checked with
// promtool here before anything reaches the target; on the target,
// Prometheus (and Grafana) run as containers and Prometheus reloads
// without a restart.
package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"text/template"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
)

// Files are the rendered files, by path relative to the monitoring folder.
type Files map[string][]byte

// Input is what the files depend on beyond the configuration.
type Input struct {
	// Backends are the serving backends' addresses (host:port as seen from
	// the target), one per target.
	Backends []string
	// Release is the serving release (a label on every series).
	Release string
	// Name is the deployment's (deploy.Layout's): the log store's tags
	// are made of it (the error lines panel).
	Name string
}

var prometheusTemplate = template.Must(template.New("prometheus").Parse(`# lawsker-deploy: {{.App}} ({{.Env}}) monitoring (generated; edits are replaced by the next apply)
global:
  scrape_interval: {{.Interval}}
  evaluation_interval: {{.Interval}}
  external_labels:
    app: {{printf "%q" .App}}
    environment: {{printf "%q" .Env}}

rule_files:
  - rules/*.yml

scrape_configs:
{{- if ne .MetricsPath "none"}}
  - job_name: backend
    metrics_path: {{printf "%q" .MetricsPath}}
    static_configs:
      - targets: [{{range $i, $b := .Backends}}{{if $i}}, {{end}}{{printf "%q" $b}}{{end}}]
        labels:
          release: {{printf "%q" .Release}}
{{- end}}
{{- if .Node}}
  - job_name: node
    static_configs:
      - targets: [{{printf "%q" .Node}}]
{{- end}}
{{- if .Nginx}}
  - job_name: nginx
    static_configs:
      - targets: [{{printf "%q" .Nginx}}]
{{- end}}
  - job_name: prometheus
    static_configs:
      - targets: [{{printf "%q" .Self}}]
`))

var rulesTemplate = template.Must(template.New("rules").Parse(`# lawsker-deploy: alert rules of {{.App}} (generated)
groups:
  - name: lawsker-{{.App}}
    rules:
      - alert: BackendDown
        expr: up{job="backend"} == 0
        for: 1m
        labels: {severity: critical}
        annotations:
          summary: "{{"{{"}} $labels.instance {{"}}"}} of {{.App}} is down"
      - alert: HighErrorRate
        expr: (sum(rate(http_requests_total{job="backend",status=~"5.."}[5m])) / clamp_min(sum(rate(http_requests_total{job="backend"}[5m])), 1e-9)) > {{.ErrorRate}}
        for: 5m
        labels: {severity: critical}
        annotations:
          summary: "{{.App}}: more than {{.ErrorRatePct}}% of requests fail"
      - alert: HighLatencyP95
        expr: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="backend"}[5m]))) > {{.P95Seconds}}
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: "{{.App}}: p95 latency above {{.P95Seconds}}s"
      - alert: CertificateExpiringSoon
        expr: (lawsker_certificate_expiry_timestamp_seconds - time()) < 7 * 86400
        for: 1h
        labels: {severity: warning}
        annotations:
          summary: "the certificate of {{"{{"}} $labels.domain {{"}}"}} expires within 7 days (renewal failing?)"
      - alert: DiskAlmostFull
        expr: (1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay"}) * 100 > {{.Disk}}
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: "{{"{{"}} $labels.instance {{"}}"}} {{"{{"}} $labels.mountpoint {{"}}"}} is more than {{.Disk}}% full"
`))

// Render renders every file. Values come from validated configuration.
func Render(cfg *config.Config, in Input) (Files, error) {
	m := cfg.Monitoring
	self, err := listenAddr(m.PrometheusURL)
	if err != nil {
		return nil, fmt.Errorf("monitoring.prometheus_url: %w", err)
	}
	if len(in.Backends) == 0 {
		return nil, fmt.Errorf("no serving backend to scrape: deploy first")
	}
	interval := m.ScrapeInterval.D()
	if interval <= 0 {
		interval = 15 * time.Second
	}
	data := map[string]any{
		"App": cfg.App, "Env": cfg.Environment, "Interval": interval.String(), "Backends": in.Backends, "Release": in.Release,
		"Node": m.NodeExporter, "Nginx": m.NginxExporter, "Self": self, "MetricsPath": metricsPath(m.MetricsPath),
		"ErrorRate":    strconv.FormatFloat(cfg.Rollback.ErrorRateThreshold, 'f', -1, 64),
		"ErrorRatePct": strconv.FormatFloat(100*cfg.Rollback.ErrorRateThreshold, 'f', -1, 64),
		"P95Seconds":   strconv.FormatFloat(float64(cfg.Verification.Thresholds.ResponseTimeMS)/1000, 'f', -1, 64),
		"Disk":         cfg.Verification.Thresholds.DiskUsagePercent,
	}
	files := Files{}
	for name, t := range map[string]*template.Template{"prometheus.yml": prometheusTemplate, "rules/lawsker.yml": rulesTemplate} {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return nil, err
		}
		files[name] = b.Bytes()
	}
	if m.ExtraRules != "" {
		extra, err := os.ReadFile(m.ExtraRules)
		if err != nil {
			return nil, fmt.Errorf("monitoring.extra_rules: %w", err)
		}
		files["rules/extra.yml"] = extra
	}
	files["grafana/provisioning/datasources/lawsker.yml"] = []byte(fmt.Sprintf(`apiVersion: 1
datasources:
  - name: Prometheus
    uid: lawsker-prometheus
    type: prometheus
    access: proxy
    url: http://%s
    isDefault: true
`, self) + logsDatasource(cfg))
	files["grafana/provisioning/dashboards/lawsker.yml"] = []byte(`apiVersion: 1
providers:
  - name: lawsker
    type: file
    disableDeletion: true
    options:
      path: /etc/lawsker-monitoring/grafana/dashboards
`)
	dash, err := dashboard(cfg, in)
	if err != nil {
		return nil, err
	}
	files["grafana/dashboards/lawsker.json"] = dash
	return files, nil
}

// listenAddr is host:port of a URL (default port 9090).
func listenAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	port := u.Port()
	if port == "" {
		port = "9090"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// LogsDatasourceUID is the provisioned VictoriaLogs data source's uid.
const LogsDatasourceUID = "lawsker-logs"

// LogsPlugin is Grafana's VictoriaLogs data source plugin.
const LogsPlugin = "victoriametrics-logs-datasource"

// logsDatasource is the provisioned log store data source (none without
// monitoring.logs). Grafana runs on the first target, beside its store.
func logsDatasource(cfg *config.Config) string {
	if !cfg.Monitoring.LogsOn() {
		return ""
	}
	s, err := LogStoreFor(cfg)
	if err != nil {
		return ""
	}
	return fmt.Sprintf(`  - name: VictoriaLogs
    uid: %s
    type: %s
    access: proxy
    url: http://%s
`, LogsDatasourceUID, LogsPlugin, s.Listen)
}

// ErrorLinesPanelQuery is the LogsQL of the dashboard's error lines
// panel: the serving release's backend lines with an error word.
func ErrorLinesPanelQuery(name, release string) string {
	return "app_name:=" + strconv.Quote(BackendTag(name, release)) + " " + ErrorLinesLogsQL()
}

// dashboard is the app's Grafana dashboard: requests, errors, latency,
// resources, and deploy annotations (the release label changing); with
// monitoring.logs, the serving release's error lines beside them.
func dashboard(cfg *config.Config, in Input) ([]byte, error) {
	app := cfg.App
	panel := func(id int, title, expr, unit string, x, y int) map[string]any {
		return map[string]any{"id": id, "title": title, "type": "timeseries", "datasource": map[string]string{"type": "prometheus", "uid": "lawsker-prometheus"},
			"gridPos":     map[string]int{"h": 8, "w": 12, "x": x, "y": y},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": unit}},
			"targets":     []map[string]string{{"expr": expr, "refId": "A"}}}
	}
	panels := []any{
		panel(1, "Requests per second", `sum(rate(http_requests_total{job="backend"}[5m]))`, "reqps", 0, 0),
		panel(2, "Error rate", `sum(rate(http_requests_total{job="backend",status=~"5.."}[5m])) / clamp_min(sum(rate(http_requests_total{job="backend"}[5m])), 1e-9)`, "percentunit", 12, 0),
		panel(3, "Latency p95", `histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="backend"}[5m])))`, "s", 0, 8),
		panel(4, "Backend up", `up{job="backend"}`, "none", 12, 8),
		panel(5, "CPU", `1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m]))`, "percentunit", 0, 16),
		panel(6, "Memory", `1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes`, "percentunit", 12, 16),
	}
	if cfg.Monitoring.LogsOn() && in.Name != "" && in.Release != "" {
		panels = append(panels, map[string]any{"id": 7, "title": "Error lines of release " + in.Release, "type": "logs",
			"datasource": map[string]string{"type": LogsPlugin, "uid": LogsDatasourceUID},
			"gridPos":    map[string]int{"h": 10, "w": 24, "x": 0, "y": 24},
			"options":    map[string]any{"showTime": true, "wrapLogMessage": true, "sortOrder": "Descending"},
			"targets":    []map[string]string{{"expr": ErrorLinesPanelQuery(in.Name, in.Release), "refId": "A", "queryType": "instant"}}})
	}
	d := map[string]any{
		"uid": "lawsker-" + app, "title": "lawsker: " + app, "schemaVersion": 39, "refresh": "30s", "time": map[string]string{"from": "now-6h", "to": "now"},
		"panels": panels,
		"annotations": map[string]any{"list": []any{map[string]any{
			"name": "Deploys", "enable": true, "iconColor": "blue", "datasource": map[string]string{"type": "prometheus", "uid": "lawsker-prometheus"},
			"expr": `changes(max(up{job="backend"} * on(instance) group_left(release) up{job="backend"})[2m:]) > 0`, "titleFormat": "deploy", "textFormat": "release {{release}}",
		}}},
	}
	return json.MarshalIndent(d, "", "  ")
}

// Write puts the files under dir (for promtool, or a local look).
func (f Files) Write(dir string) error {
	for name, data := range f {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Names lists the files in a stable order.
func (f Files) Names() []string {
	var out []string
	for k := range f {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// metricsPath is the backend's metrics path ("/metrics" when unset).
func metricsPath(p string) string {
	if p == "" {
		return "/metrics"
	}
	return p
}
