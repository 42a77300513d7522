package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Registry is a throwaway OCI registry (distribution) on loopback. Docker
// trusts registries on 127.0.0.0/8 without TLS.
type Registry struct {
	Addr string // host:port
	proc *Process
}

// StartRegistry starts a registry storing blobs in a temporary folder.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	dir := TempDir(t, "registry")
	r := &Registry{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), r.Addr), 0o644)
	r.proc = Start(t, "registry", exec.Command(Bin(t, "registry"), "serve", cfg))
	r.proc.WaitFor(t, 20*time.Second, "answering /v2/", func(ctx context.Context) error {
		return httpStatus(ctx, http.DefaultClient, "http://"+r.Addr+"/v2/", http.StatusOK)
	})
	return r
}

// httpStatus GETs url and checks the status code.
func httpStatus(ctx context.Context, client *http.Client, url string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	return nil
}
