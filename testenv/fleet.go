package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FleetHost is one host of a fleet: its own loopback address, sshd, deploy
// root and (web hosts) nginx, sharing the one Docker engine (containers on
// the host network, told apart by their lawsker.base label).
type FleetHost struct {
	Name  string
	Addr  string // 127.0.0.2, 127.0.0.3, ...
	SSHD  *SSHD
	Nginx *Nginx // nil on a worker
	Root  string
}

// Fleet is web hosts and workers behind a front load balancer (an nginx of
// its own on 127.0.0.1:FrontPort with every web host's site as an upstream,
// none ever marked down, a failed connection tried on the next).
type Fleet struct {
	Hosts     []*FleetHost
	Docker    *Docker
	Registry  *Registry
	AppPort   int // each web host's site listens on Addr:AppPort
	Front     *Nginx
	FrontPort int
}

// StartFleet starts web hosts web-1..web-N on 127.0.0.2.. and workers
// worker-1.. after them, and the front load balancer; when the test ends
// the app's containers of every host are removed.
func StartFleet(t testing.TB, app string, web, workers int) *Fleet {
	t.Helper()
	f := &Fleet{Docker: DockerEngine(t), Registry: StartRegistry(t), AppPort: FreePort(t)}
	var upstream []string
	for i := range web + workers {
		h := &FleetHost{Addr: fmt.Sprintf("127.0.0.%d", i+2), Root: TempDir(t, "srv")}
		h.SSHD = StartSSHDOn(t, h.Addr)
		if i < web {
			h.Name = fmt.Sprintf("web-%d", i+1)
			h.Nginx = StartNginx(t, "  server { listen 127.0.0.1:{{PORT}}; return 204; }\n  include {{DIR}}/sites/*.conf;")
			if err := os.MkdirAll(filepath.Join(h.Nginx.Dir, "sites"), 0o755); err != nil {
				t.Fatalf("testenv: %v", err)
			}
			upstream = append(upstream, fmt.Sprintf("    server %s:%d max_fails=0;", h.Addr, f.AppPort))
		} else {
			h.Name = fmt.Sprintf("worker-%d", i-web+1)
		}
		f.Hosts = append(f.Hosts, h)
	}
	f.Front = StartNginx(t, fmt.Sprintf(`  upstream fleet {
%s
    keepalive 32;
  }
  server {
    listen 127.0.0.1:{{PORT}};
    location / {
      proxy_pass http://fleet;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_next_upstream error timeout http_502 non_idempotent;
      proxy_next_upstream_tries 0;
    }
  }`, strings.Join(upstream, "\n")))
	f.FrontPort = f.Front.Port
	t.Cleanup(func() {
		for _, h := range f.Hosts {
			f.Docker.removeDeployed(filepath.Join(h.Root, app))
		}
	})
	return f
}

// SitePath is where a web host's site link for app goes.
func (h *FleetHost) SitePath(app string) string {
	return filepath.Join(h.Nginx.Dir, "sites", app+".conf")
}

// TargetJSON is the host as a deploy.json target (roles, ssh, root,
// docker, nginx).
func (f *Fleet) TargetJSON(h *FleetHost, app string) string {
	roles, nginx := `["worker"]`, ""
	if h.Nginx != nil {
		roles = `["web"]`
		nginx = fmt.Sprintf(`, "nginx": {"prefix": %q, "config": %q, "access_log": "off", "site_path": %q, "listen": %d, "listen_address": %q}`,
			h.Nginx.Dir, h.Nginx.Conf, h.SitePath(app), f.AppPort, h.Addr)
	}
	return fmt.Sprintf(`{"name": %q, "host": %q, "roles": %s, "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q, "connect_timeout": "3s"},
	  "root": %q, "docker": {"host": %q}%s}`, h.Name, h.Addr, roles, h.SSHD.User, h.SSHD.Port, h.SSHD.KeyPath, h.SSHD.KnownHosts, h.Root, f.Docker.Host, nginx)
}
