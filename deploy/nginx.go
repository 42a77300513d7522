package deploy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/template"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Nginx builds nginx argv for one target.
type Nginx struct {
	cfg config.Nginx
	// pidFile is the master's pid file ("" when not known) and mark a
	// file of the deployment's: with both, Reload writes the master's
	// children from before the reload to mark, and Drain waits for them
	// to take it.
	pidFile, mark string
}

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

// reloadScript lists the children of the master whose pid is in file $1
// into file $2 (atomically; a listing that cannot be made leaves no file),
// then runs the reload command that follows.
const reloadScript = `rm -f "$2"
m=$(cat "$1" 2>/dev/null) && command -v pgrep >/dev/null 2>&1 && { pgrep -P "$m" > "$2.tmp"; mv -f "$2.tmp" "$2"; } 2>/dev/null
shift 2
exec "$@"`

// Reload asks the running master to reload; old workers finish their
// requests (to the old backend, still running) before they exit. With
// the pid file known, the workers from before the reload are written
// down first, for Drain.
func (n Nginx) Reload() []string {
	if n.pidFile == "" || n.mark == "" {
		return n.cmd("-s", "reload")
	}
	return append([]string{"sh", "-c", reloadScript, "sh", n.pidFile, n.mark}, n.cmd("-s", "reload")...)
}

// pidFileScript prints the pid file of nginx's configuration ($1 is the
// nginx command line, as a quoted string): its pid directive (nginx -T),
// else the compiled-in --pid-path; nothing when neither says.
const pidFileScript = `f=$(eval "$1 -T" 2>/dev/null | sed -n 's/^[[:space:]]*pid[[:space:]][[:space:]]*\([^;]*\);.*/\1/p' | head -n 1)
[ -n "$f" ] || f=$(eval "$1 -V" 2>&1 | tr ' ' '\n' | sed -n 's/^--pid-path=//p' | head -n 1)
printf '%s' "$f"`

// PidFile finds where the master's pid is written.
func (n Nginx) PidFile() []string {
	return []string{"sh", "-c", pidFileScript, "sh", remote.Quote(n.cmd()...)}
}

// drainScript waits until every process listed in file $2 (the master's
// children before the last reload, Reload's mark) has taken the reload:
// it exited, is no longer a child of the master whose pid is in file $1,
// or calls itself "worker process is shutting down", which nginx sets
// just before the worker closes its listening sockets. A worker that has
// not yet seen the signal (starved of CPU) still accepts connections with
// the old configuration, and has not set that title, so the title alone
// of a live child is not enough: the pids are. A worker that took the
// signal only finishes what it has (to the backend the reload left), so
// it is not waited for: a client connection it still holds could keep it
// for a minute. It exits 0 when done or when that cannot be known (no pid
// file, no mark, no /proc), 3 after 2 s with a worker that has not taken
// the reload.
const drainScript = `m=$(cat "$1" 2>/dev/null) || exit 0
old=$(cat "$2" 2>/dev/null) || exit 0
[ -d /proc/self ] || exit 0
i=0
while :; do
  left=
  for p in $old; do
    pp=
    read -r _ _ _ pp _ 2>/dev/null < "/proc/$p/stat"
    [ "$pp" = "$m" ] || continue
    grep -qa 'shutting down' "/proc/$p/cmdline" 2>/dev/null && continue
    left=$p; break
  done
  [ -z "$left" ] && exit 0
  i=$((i+1)); [ "$i" -ge 100 ] && exit 3
  sleep 0.02
done`

// Drain waits for the workers from before the last Reload to take it (for
// nothing when the pid file is not known).
func (n Nginx) Drain() []string {
	return []string{"sh", "-c", drainScript, "sh", n.pidFile, n.mark}
}

// withPidFile is n with the master's pid file known.
func (n Nginx) withPidFile(f string) Nginx { n.pidFile = f; return n }

// SiteData is what the site template needs.
type SiteData struct {
	App         string
	Name        string // the deployment's name in nginx (Layout.Name): its upstream and zones
	Release     string
	Listen      string // "80" or "127.0.0.1:8080"
	ServerNames string
	Upstream    string // 127.0.0.1:port
	// Fallback is the previous release's backend, still warm (""
	// none): clients' requests the new backend refuses (a crash, a
	// restart) go to it; lawsker-deploy's own requests (checks, watch,
	// load) never do, so they judge the new release alone.
	Fallback string
	Frontend string // the release's frontend folder; "" proxies everything
	// Routes go to the backend when a frontend is served
	// (config.Routes); everything else is the frontend's.
	Routes []config.Route
	// Webroot serves ACME HTTP-01 tokens at /.well-known/acme-challenge/
	// ("" serves none).
	Webroot string
	// TLS: one HTTPS server per domain; the HTTP server then only
	// redirects (and serves ACME tokens).
	ListenTLS string // "443" or "127.0.0.1:8443"
	TLS       []TLSServer
	// HostLog is the host's access log the servers write to too (""
	// writes none: targets[].nginx.access_log "off").
	HostLog string
	// WatchLog is the release's own access log, written until WatchUntil
	// (unix seconds): the watch window counts the requests nginx served
	// to the release, and its errors, there ("" writes none).
	WatchLog   string
	WatchUntil int64
	// Syslog is the log store's syslog address (127.0.0.1:port; "" none):
	// the access log goes there as JSON lines naming the release, the
	// upstream, the status and the time taken, the error log beside it,
	// tagged AccessTag and ErrorTag.
	Syslog, AccessTag, ErrorTag string
	// Canary splits the clients between this release and the previous
	// one (nil: every client gets this release).
	Canary *CanarySite
	// ReleaseValue is what the release header and the access log's
	// release field say: the release, or during a canary the variable
	// naming the release that answered (set by RenderSite).
	ReleaseValue string
	// Maintenance (with Hold) answers 503 with Retry-After and the page in
	// Dir, and proxies the health path to Upstream (when set).
	Maintenance *MaintenancePage
	// Hold renders the maintenance hold instead of the release: every
	// request but ACME tokens gets 503 with Retry-After (no upstream).
	Hold bool
}

// CanarySite is a canary's split: Weight percent of the clients get the
// new release, the others the previous one at Previous; lawsker-deploy's
// own requests always get the new one (they judge it). With Sticky a
// cookie keeps a client on its release. Log is the release's canary log:
// every client request's time, release, status and time taken.
type CanarySite struct {
	Weight          int
	Sticky          bool
	Cookie          string // the cookie's name
	Previous        string // 127.0.0.1:port
	PreviousRelease string
	Log             string
}

// MaintenancePage is what a maintenance site answers.
type MaintenancePage struct {
	Dir        string // holds MaintenancePageFile
	RetryAfter int    // seconds
	HealthPath string // proxied to the serving backend ("" none)
}

// MaintenancePageFile is the page's file name (and its internal URI).
const MaintenancePageFile = "lawsker-maintenance.html"

// TLSServer is one domain's HTTPS server.
type TLSServer struct {
	Name     string
	Cert     string // fullchain.pem
	Key      string // privkey.pem (0600)
	Stapling bool   // the certificate names an OCSP responder
}

// siteServer is one rendered server block.
type siteServer struct {
	SiteData
	Listen, Names string
	TLS           *TLSServer
	Redirect      string // non-empty: redirect to https (":port" when not 443)
}

// The site: one upstream (the release's backend), the release's own
// frontend folder as root (not `current`: the nginx config and the files it
// serves switch together, in one reload), /api to the backend, security
// headers, gzip, a year of caching for hashed assets, no caching for
// index.html, and X-Lawsker-Release on every response so a switch can
// confirm nginx serves the new release. With TLS: the HTTP server only
// redirects to HTTPS (and serves ACME tokens); each domain gets an HTTPS
// server with its certificate, TLS 1.2/1.3 only, modern AEAD ciphers, HSTS,
// and OCSP stapling when its certificate names a responder.
var siteTemplate = template.Must(template.New("site").Parse(`# lawsker-deploy: {{.App}} {{if .Hold}}maintenance hold {{end}}release {{.Release}} (generated; edits are replaced by the next deploy)
{{- if .MaintUpstream}}
upstream {{.Name}}_backend {
    server {{.Upstream}} max_fails=0;
    keepalive 16;
}
{{- end}}
{{- if not .Hold}}
upstream {{.Name}}_backend {
    server {{.Upstream}} max_fails=0;
    keepalive 16;
}
{{- if .Fallback}}

# Clients: a request the new backend refuses goes to the previous one.
upstream {{.Name}}_clients {
    server {{.Upstream}} max_fails=0;
    server {{.Fallback}} backup;
    keepalive 16;
}
map $http_user_agent ${{.Name}}_upstream {
    "~^lawsker-deploy" {{.Name}}_backend;
    default {{.Name}}_clients;
}
{{- end}}
{{- if .Syslog}}

# Access lines for the log store (JSON; the path without its query string).
log_format {{.Name}}_json escape=json '{"time":"$time_iso8601","release":"{{.ReleaseValue}}","method":"$request_method","path":"$uri","status":"$status","bytes":"$body_bytes_sent","request_time":"$request_time","upstream":"$upstream_addr","upstream_status":"$upstream_status","upstream_time":"$upstream_response_time","host":"$host","agent":"$http_user_agent"}';
{{- end}}
{{- with .Canary}}

# Canary: {{.Weight}}% of the clients get release {{$.Release}}, the others {{.PreviousRelease}}{{if .Sticky}}, kept by the cookie {{.Cookie}}{{end}}.
upstream {{$.Name}}_previous {
    server {{.Previous}} max_fails=0;
    keepalive 16;
}
split_clients "${request_id}" ${{$.Name}}_pick {
    {{.Weight}}% new;
    * old;
}
{{- if .Sticky}}
map $cookie_{{.Cookie}} ${{$.Name}}_sticky {
    "new" new;
    "old" old;
    default ${{$.Name}}_pick;
}
{{- end}}
map $http_user_agent ${{$.Name}}_variant {
    "~^lawsker-deploy" new;
    default ${{$.Name}}_{{if .Sticky}}sticky{{else}}pick{{end}};
}
map ${{$.Name}}_variant ${{$.Name}}_canary {
    new {{$.Name}}_backend;
    default {{$.Name}}_previous;
}
map ${{$.Name}}_variant ${{$.Name}}_release {
    new "{{$.Release}}";
    default "{{.PreviousRelease}}";
}
map $http_user_agent ${{$.Name}}_client {
    "~^lawsker-deploy" 0;
    default 1;
}
log_format {{$.Name}}_canary '$msec ${{$.Name}}_variant $status $request_time';
{{- end}}
{{- if .WatchLog}}

# The release's first minutes, for the watch window: time, status, client.
log_format {{.Name}}_watch '$msec $status "$http_user_agent"';
map $msec ${{.Name}}_watch {
    "~^({{.WatchBefore}})\." 1;
    default 0;
}
{{- end}}
{{- end}}
{{range .Servers}}
server {
    listen {{.Listen}};
    server_name {{.Names}};
{{- with .TLS}}

    ssl_certificate {{.Cert}};
    ssl_certificate_key {{.Key}};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:{{$.Name}}_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;
{{- if .Stapling}}
    ssl_stapling on;
    ssl_stapling_verify on;
{{- end}}
{{- end}}
{{- if .Webroot}}

    location ^~ /.well-known/acme-challenge/ {
        root {{.Webroot}};
        default_type text/plain;
        add_header X-Lawsker-Release "{{.Release}}" always;
    }
{{- end}}
{{- if .Redirect}}

    add_header X-Lawsker-Release "{{.Release}}" always;
    location / {
        return 301 https://$host{{.Redirect}}$request_uri;
    }
}
{{- else if .Maintenance}}{{$srv := .}}{{with .Maintenance}}
{{- if and .HealthPath $.MaintUpstream}}

    location = {{.HealthPath}} {{"{"}}{{template "proxy" $}}
    }
{{- end}}

    error_page 503 /{{$.PageFile}};
    location = /{{$.PageFile}} {
        root {{.Dir}};
        internal;
        default_type text/html;
        add_header Retry-After "{{.RetryAfter}}" always;
        add_header Cache-Control "no-store" always;{{template "headers" $srv}}
    }

    location / {
        return 503;
    }
}{{end}}
{{- else if .Hold}}

    location / {
        default_type text/plain;
        add_header Retry-After "1" always;
        add_header Cache-Control "no-store" always;{{template "headers" .}}
        return 503 "{{$.App}} is being switched to another release; retry in a second\n";
    }
}
{{- else}}
{{template "headers" .}}
{{- if .WatchLog}}
    access_log {{.WatchLog}} {{$.Name}}_watch if=${{$.Name}}_watch;
{{- end}}
{{- if .HostLog}}
    access_log {{.HostLog}} combined;
{{- end}}
{{- with .Canary}}
    access_log {{.Log}} {{$.Name}}_canary if=${{$.Name}}_client;
{{- end}}
{{- if .Syslog}}
    access_log syslog:server={{.Syslog}},tag={{.AccessTag}},nohostname {{$.Name}}_json;
    error_log syslog:server={{.Syslog}},tag={{.ErrorTag}},nohostname warn;
{{- end}}

    gzip on;
    gzip_comp_level 5;
    gzip_min_length 256;
    gzip_types text/plain text/css application/javascript application/json image/svg+xml;

{{- if .Frontend}}
{{- range .Routes}}

    location {{.Location}} {{"{"}}{{template "proxy" $}}
    }
{{- end}}

    root {{.Frontend}};
    index index.html;

    location ~* "\.[0-9a-f]{8,}\.(js|css|woff2?|png|jpg|jpeg|gif|svg|ico|webp)$" {
        expires 1y;
        add_header Cache-Control "public, immutable" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header X-Lawsker-Release "{{.Release}}" always;
{{- if .TLS}}
        add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
{{- end}}
        try_files $uri =404;
    }

    location = /index.html {
        add_header Cache-Control "no-cache" always;{{template "headers" .}}
    }

    location / {
        try_files $uri $uri/ /index.html;
    }
{{- else}}

    location / {{"{"}}{{template "proxy" $}}
    }
{{- end}}
}
{{- end}}
{{end}}
{{- define "proxy"}}
        proxy_pass http://{{if .Canary}}${{.Name}}_canary{{else if .Fallback}}${{.Name}}_upstream{{else}}{{.Name}}_backend{{end}};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_next_upstream error timeout;
{{- end}}
{{- define "headers"}}
    add_header X-Content-Type-Options "nosniff" always;
    add_header X-Frame-Options "DENY" always;
    add_header Referrer-Policy "strict-origin-when-cross-origin" always;
    add_header X-Lawsker-Release "{{.ReleaseValue}}" always;
{{- with .Canary}}{{if .Sticky}}
    add_header Set-Cookie "{{.Cookie}}=${{$.Name}}_variant; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax" always;
{{- end}}{{end}}
{{- if .TLS}}
    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
{{- end}}
{{- end}}`))

// RenderSite renders a release's nginx site file. Every value in it comes
// from validated configuration (names, domains, absolute paths of safe
// characters) or from lawsker-deploy itself.
func RenderSite(d SiteData) ([]byte, error) {
	if d.ServerNames == "" {
		d.ServerNames = "_"
	}
	if d.Name == "" {
		d.Name = d.App
	}
	d.ReleaseValue = d.Release
	if d.Canary != nil {
		d.ReleaseValue = "$" + d.Name + "_release"
		d.Fallback = "" // the split is the fallback: each client has its release
	}
	var servers []siteServer
	if len(d.TLS) == 0 {
		servers = append(servers, siteServer{SiteData: d, Listen: d.Listen, Names: d.ServerNames})
	} else {
		redirect := ":" + d.ListenTLS[strings.LastIndexByte(d.ListenTLS, ':')+1:]
		if redirect == ":443" {
			redirect = ""
		}
		servers = append(servers, siteServer{SiteData: d, Listen: d.Listen, Names: d.ServerNames, Redirect: redirect})
		for i := range d.TLS {
			tls := d.TLS[i]
			sd := d
			sd.Webroot = "" // tokens are fetched over HTTP only
			servers = append(servers, siteServer{SiteData: sd, Listen: d.ListenTLS + " ssl http2", Names: tls.Name, TLS: &tls})
		}
	}
	var b bytes.Buffer
	if d.Name == "" {
		d.Name = d.App
	}
	if err := siteTemplate.Execute(&b, struct {
		App, Name, Release, Upstream, Fallback string
		Syslog, PageFile, ReleaseValue         string
		Canary                                 *CanarySite
		Hold, MaintUpstream                    bool
		Servers                                []siteServer
		WatchLog, WatchBefore                  string
	}{d.App, d.Name, d.Release, d.Upstream, d.Fallback, d.Syslog, MaintenancePageFile, d.ReleaseValue, d.Canary, d.Hold, d.Hold && d.Maintenance != nil && d.Upstream != "",
		servers, d.WatchLog, beforeRE(d.WatchUntil)}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// beforeRE matches the whole seconds of a time before t (unix seconds,
// the digits of nginx's $msec before its dot): nginx's map has no
// comparison, so "before" is spelled digit by digit. For each position
// where t has a digit above 0: t's digits before it, a smaller digit
// there, any digits after; and any number of fewer digits.
func beforeRE(t int64) string {
	s := strconv.FormatInt(t, 10)
	var alts []string
	for i := range len(s) {
		d := s[i] - '0'
		if d == 0 {
			continue
		}
		smaller := "0"
		if d > 1 {
			smaller = fmt.Sprintf("[0-%d]", d-1)
		}
		rest := ""
		if n := len(s) - i - 1; n > 0 {
			rest = fmt.Sprintf("[0-9]{%d}", n)
		}
		alts = append(alts, s[:i]+smaller+rest)
	}
	if len(s) > 1 {
		alts = append(alts, fmt.Sprintf("[0-9]{1,%d}", len(s)-1)) // fewer digits
	}
	if len(alts) == 0 {
		return "(?!)" // nothing is before 0
	}
	return strings.Join(alts, "|")
}

// ServerNames joins the configured domains for server_name.
func ServerNames(domains []string) string { return strings.Join(domains, " ") }

// NginxFor is the nginx of a target.
func NginxFor(t config.Target) Nginx { return Nginx{cfg: t.Nginx} }
