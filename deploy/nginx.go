package deploy

import (
	"bytes"
	"strings"
	"text/template"

	"github.com/lawsker/lawsker-deploy/config"
)

// Nginx builds nginx argv for one target.
type Nginx struct{ cfg config.Nginx }

func (n Nginx) cmd(args ...string) []string {
	bin := n.cfg.Binary
	if bin == "" {
		bin = "nginx"
	}
	argv := []string{bin}
	if n.cfg.Prefix != "" {
		argv = append(argv, "-p", n.cfg.Prefix)
	}
	if n.cfg.Config != "" {
		argv = append(argv, "-c", n.cfg.Config)
	}
	return append(argv, args...)
}

// Test checks the whole configuration (with the site file as it is now).
func (n Nginx) Test() []string { return n.cmd("-t", "-q") }

// Reload asks the running master to reload; old workers finish their
// requests (to the old backend, still running) before they exit.
func (n Nginx) Reload() []string { return n.cmd("-s", "reload") }

// SiteData is what the site template needs.
type SiteData struct {
	App         string
	Release     string
	Listen      string // "80" or "127.0.0.1:8080"
	ServerNames string
	Upstream    string // 127.0.0.1:port
	Frontend    string // the release's frontend folder; "" proxies everything
}

// The site: one upstream (the release's backend), the release's own
// frontend folder as root (not `current`: the nginx config and the files it
// serves switch together, in one reload), /api to the backend, security
// headers, gzip, a year of caching for hashed assets, no caching for
// index.html, and X-Lawsker-Release on every response so a switch can
// confirm nginx serves the new release.
var siteTemplate = template.Must(template.New("site").Parse(`# lawsker-deploy: {{.App}} release {{.Release}} (generated; edits are replaced by the next deploy)
upstream {{.App}}_backend {
    server {{.Upstream}} max_fails=0;
    keepalive 16;
}

server {
    listen {{.Listen}};
    server_name {{.ServerNames}};

    add_header X-Content-Type-Options "nosniff" always;
    add_header X-Frame-Options "DENY" always;
    add_header Referrer-Policy "strict-origin-when-cross-origin" always;
    add_header X-Lawsker-Release "{{.Release}}" always;

    gzip on;
    gzip_comp_level 5;
    gzip_min_length 256;
    gzip_types text/plain text/css application/javascript application/json image/svg+xml;

    location /api/ {
        proxy_pass http://{{.App}}_backend;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_next_upstream error timeout;
    }
{{- if .Frontend}}

    root {{.Frontend}};
    index index.html;

    location ~* "\.[0-9a-f]{8,}\.(js|css|woff2?|png|jpg|jpeg|gif|svg|ico|webp)$" {
        expires 1y;
        add_header Cache-Control "public, immutable" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header X-Lawsker-Release "{{.Release}}" always;
        try_files $uri =404;
    }

    location = /index.html {
        add_header Cache-Control "no-cache" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header X-Frame-Options "DENY" always;
        add_header Referrer-Policy "strict-origin-when-cross-origin" always;
        add_header X-Lawsker-Release "{{.Release}}" always;
    }

    location / {
        try_files $uri $uri/ /index.html;
    }
{{- else}}

    location / {
        proxy_pass http://{{.App}}_backend;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
{{- end}}
}
`))

// RenderSite renders a release's nginx site file. Every value in it comes
// from validated configuration (names, domains, absolute paths of safe
// characters) or from lawsker-deploy itself.
func RenderSite(d SiteData) ([]byte, error) {
	if d.ServerNames == "" {
		d.ServerNames = "_"
	}
	var b bytes.Buffer
	if err := siteTemplate.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ServerNames joins the configured domains for server_name.
func ServerNames(domains []string) string { return strings.Join(domains, " ") }
