package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Prometheus is a throwaway Prometheus server.
type Prometheus struct {
	URL  string
	Conf string
	proc *Process
}

// StartPrometheus starts Prometheus with the given prometheus.yml (a global
// section with a 1 s scrape interval when empty) and lifecycle API on.
func StartPrometheus(t testing.TB, config string) *Prometheus {
	t.Helper()
	if config == "" {
		config = "global:\n  scrape_interval: 1s\n"
	}
	dir := TempDir(t, "prometheus")
	port := FreePort(t)
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Conf: filepath.Join(dir, "prometheus.yml")}
	writeFile(t, p.Conf, config, 0o644)
	p.proc = Start(t, "prometheus", exec.Command(Bin(t, "prometheus"), "--config.file="+p.Conf,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--web.enable-lifecycle"))
	p.proc.WaitFor(t, 30*time.Second, "ready", func(ctx context.Context) error {
		return httpStatus(ctx, http.DefaultClient, p.URL+"/-/ready", http.StatusOK)
	})
	return p
}

// Promtool runs promtool with args (check config/rules ...).
func Promtool(ctx context.Context, t testing.TB, args ...string) (string, error) {
	return Run(ctx, Bin(t, "promtool"), args...)
}

// StartPrometheusFiles starts Prometheus on a folder of files
// (prometheus.yml and what it names, e.g. rules/*.yml).
func StartPrometheusFiles(t testing.TB, files map[string][]byte) *Prometheus {
	t.Helper()
	dir := TempDir(t, "prometheus")
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		writeFile(t, p, string(data), 0o644)
	}
	port := FreePort(t)
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Conf: filepath.Join(dir, "prometheus.yml")}
	p.proc = Start(t, "prometheus", exec.Command(Bin(t, "prometheus"), "--config.file="+p.Conf,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--web.enable-lifecycle"))
	p.proc.WaitFor(t, 30*time.Second, "ready", func(ctx context.Context) error {
		return httpStatus(ctx, http.DefaultClient, p.URL+"/-/ready", http.StatusOK)
	})
	return p
}

// ImportPrometheus makes an image of Debian's prometheus binary (with the
// C library it links) as ref, /bin/prometheus its program: what a target
// runs when monitoring.prometheus_image is ref (nothing can be pulled here).
func (d *Docker) ImportPrometheus(t testing.TB, ref string) {
	t.Helper()
	d.ImportFiles(t, ref, map[string]string{
		Bin(t, "prometheus"):              "/bin/prometheus",
		"/lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2":     "/lib64/ld-linux-x86-64.so.2",
	})
}
