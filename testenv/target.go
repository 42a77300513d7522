package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// TargetHost is a deploy target on this machine: sshd (the host), the
// Docker engine (containers on the host network), a registry, and an nginx
// whose main configuration includes every file in <nginx dir>/sites, with a
// status server on Nginx.Port for readiness (the app's site, on AppPort,
// arrives with the first deploy).
type TargetHost struct {
	SSHD     *SSHD
	Docker   *Docker
	Registry *Registry
	Nginx    *Nginx
	Root     string // the deploy root (targets[].root)
	AppPort  int    // the port the app's nginx site should listen on
	images   map[string]string
}

// StartTargetHost starts the servers and, when the test ends, removes the
// containers deployed under Root/<app> (label lawsker.base): never another
// test's, though they share the Docker engine.
func StartTargetHost(t testing.TB, app string) *TargetHost {
	t.Helper()
	h := &TargetHost{SSHD: StartSSHD(t), Docker: DockerEngine(t), Registry: StartRegistry(t), Root: TempDir(t, "srv"), images: map[string]string{}}
	h.Nginx = StartNginx(t, "  server { listen 127.0.0.1:{{PORT}}; return 204; }\n  include {{DIR}}/sites/*.conf;")
	if err := os.MkdirAll(filepath.Join(h.Nginx.Dir, "sites"), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	h.AppPort = FreePort(t)
	t.Cleanup(func() { h.Docker.removeDeployed(filepath.Join(h.Root, app)) })
	return h
}

// SitePath is where the app's nginx site link goes.
func (h *TargetHost) SitePath(app string) string {
	return filepath.Join(h.Nginx.Dir, "sites", app+".conf")
}

// Image builds the Go package pkg with the version (and extra ldflags),
// pushes it to <registry>/<repo>:<version> and returns it by digest; built
// once per version.
func (h *TargetHost) Image(t testing.TB, pkg, repo, version string, ldflags ...string) string {
	t.Helper()
	key := repo + ":" + version
	if ref, ok := h.images[key]; ok {
		return ref
	}
	bin := BuildStatic(t, pkg, filepath.Base(pkg), append([]string{"-X main.version=" + version}, ldflags...)...)
	ref := h.Docker.PushBinaryImage(t, bin, h.Registry.Addr+"/"+repo, version)
	h.images[key] = ref
	return ref
}
