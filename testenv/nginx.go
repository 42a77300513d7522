package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Nginx is a throwaway nginx with its own prefix folder.
type Nginx struct {
	Port int
	Dir  string // prefix: nginx.conf, www/, logs
	Conf string
	proc *Process
}

// NginxConfig renders a complete nginx.conf around http-level directives
// (server blocks). In servers, {{PORT}} is the port and {{DIR}} the prefix.
func NginxConfig(dir string, port int, servers string) string {
	servers = strings.NewReplacer("{{PORT}}", strconv.Itoa(port), "{{DIR}}", dir).Replace(servers)
	return fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 512; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  types { text/html html; application/javascript js; text/css css; application/json json; }
  default_type application/octet-stream;
%[2]s
}
`, dir, servers)
}

// DefaultServer serves {{DIR}}/www on the port.
const DefaultServer = `  server {
    listen 127.0.0.1:{{PORT}};
    root {{DIR}}/www;
  }`

// StartNginx writes nginx.conf with the server blocks (DefaultServer when
// empty), checks it with nginx -t and starts nginx in the foreground.
func StartNginx(t testing.TB, servers string) *Nginx {
	t.Helper()
	return StartNginxIn(t, nil, servers)
}

// StartNginxIn starts nginx inside a network namespace (nil: this one's).
func StartNginxIn(t testing.TB, ns *Netns, servers string) *Nginx {
	t.Helper()
	if servers == "" {
		servers = DefaultServer
	}
	dir := TempDir(t, "nginx")
	for _, sub := range []string{"www", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	n := &Nginx{Port: FreePort(t), Dir: dir, Conf: filepath.Join(dir, "nginx.conf")}
	writeFile(t, n.Conf, NginxConfig(dir, n.Port, servers), 0o644)
	if err := n.Test(t.Context()); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	n.proc = Start(t, "nginx", ns.command(Bin(t, "nginx"), "-p", dir, "-c", n.Conf, "-g", "daemon off;"))
	n.proc.WaitFor(t, 15*time.Second, "accepting connections", ns.ready(fmt.Sprintf("127.0.0.1:%d", n.Port)))
	return n
}

// Test runs nginx -t on the current nginx.conf.
func (n *Nginx) Test(ctx context.Context) error {
	_, err := Run(ctx, nginxBin(), "-t", "-q", "-p", n.Dir, "-c", n.Conf)
	return err
}

// Reload asks the running nginx to reload its configuration.
func (n *Nginx) Reload(ctx context.Context) error {
	_, err := Run(ctx, nginxBin(), "-s", "reload", "-p", n.Dir, "-c", n.Conf)
	return err
}

func nginxBin() string {
	p, err := findBin("nginx")
	if err != nil {
		return "nginx"
	}
	return p
}
