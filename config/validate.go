package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// validate applies the rules that involve more than one field. Field-level
// rules (types, ranges, formats, required keys) were applied while decoding.
// lines maps a path to its line for messages, when known.
func (c *Config) validate(col *collector, lines map[string]int) {
	add := func(path, format string, args ...any) {
		col.add(path, lines[path], format, args...)
	}
	names := map[string]int{}
	hosts := map[string]int{}
	for i, t := range c.Targets {
		p := indexPath("targets", i)
		if t.Name != "" {
			if j, dup := names[t.Name]; dup {
				add(p+".name", "%s is already the name of targets[%d]; target names must be unique", quote(t.Name), j)
			}
			names[t.Name] = i
		}
		key := fmt.Sprintf("%s:%d", t.Host, t.SSH.Port)
		if j, dup := hosts[key]; dup && t.Host != "" {
			add(p+".host", "%s port %d is already targets[%d]; list each host once", quote(t.Host), t.SSH.Port, j)
		}
		hosts[key] = i
		if p := t.Nginx.Listen; p >= c.Backend.HostPortMin && p <= c.Backend.HostPortMax {
			add(indexPath("targets", i)+".nginx.listen", "%d is inside backend.host_port_min-max (%d-%d), where backends get their ports", p, c.Backend.HostPortMin, c.Backend.HostPortMax)
		}
	}
	seenDomains := map[string]int{}
	for i, d := range c.Domains {
		p := indexPath("domains", i)
		lower := strings.ToLower(d)
		if j, dup := seenDomains[lower]; dup {
			add(p, "%s is already domains[%d]", quote(d), j)
		}
		seenDomains[lower] = i
		if c.TLS.Enabled && strings.HasPrefix(d, "*.") && c.TLS.Challenge == "http-01" {
			add(p, `wildcard %s needs tls.challenge "dns-01" (HTTP-01 cannot validate wildcards)`, quote(d))
		}
	}
	if c.TLS.Enabled {
		if len(c.Domains) == 0 {
			add("domains", "must list at least one domain when tls.enabled is true")
		}
		if c.TLS.Email == "" {
			add("tls.email", "is required when tls.enabled is true (the ACME account's contact)")
		}
		if c.TLS.Staging && c.TLS.ACMEDirectory != "https://acme-v02.api.letsencrypt.org/directory" {
			add("tls.staging", "and a custom tls.acme_directory exclude each other: keep one")
		}
		if c.TLS.Challenge == "dns-01" && c.TLS.DNSProvider == "" {
			add("tls.dns_provider", `is required when tls.challenge is "dns-01" (a lego provider name such as "cloudflare")`)
		} else if c.TLS.Challenge == "http-01" && c.TLS.DNSProvider != "" {
			add("tls.dns_provider", `is only used with tls.challenge "dns-01"; remove it or switch the challenge`)
		}
	}
	portValidate(c, add)
	routeValidate(c, add)
	for name := range c.Backend.SecretEnv {
		if _, both := c.Backend.Env[name]; both {
			add("backend.secret_env."+name, "is also set in backend.env; a variable comes from one place")
		}
	}
	if db := c.Database; db != nil {
		if db.Bootstrap && (db.AdminUser == "" || db.AdminPassword.IsZero()) {
			add("database.bootstrap", "needs database.admin_user and database.admin_password (the role that creates the application role and database)")
		}
		if db.PoolSizeEnv == db.MaxOverflowEnv {
			add("database.max_overflow_env", "must differ from database.pool_size_env")
		}
		if q := strings.TrimSpace(db.MigrationVersionQuery); q != "" {
			if w := strings.ToUpper(strings.Fields(q)[0]); w != "SELECT" && w != "WITH" {
				add("database.migration_version_query", "must be a SELECT (or WITH ... SELECT) returning one row of one column, got %s", quote(q))
			} else if strings.Contains(strings.TrimSuffix(q, ";"), ";") {
				add("database.migration_version_query", "must be one statement, got %s", quote(q))
			}
		}
		for _, reserved := range []string{db.PoolSizeEnv, db.MaxOverflowEnv} {
			if _, clash := c.Backend.Env[reserved]; clash {
				add("backend.env."+reserved, "is set by lawsker-deploy from the target's CPU count (database.pool_size_env / max_overflow_env); remove it or rename those")
			}
		}
		if db.URLEnv == db.PoolSizeEnv || db.URLEnv == db.MaxOverflowEnv {
			add("database.url_env", "must differ from database.pool_size_env and database.max_overflow_env")
		}
		_, inEnv := c.Backend.Env[db.URLEnv]
		_, inSecret := c.Backend.SecretEnv[db.URLEnv]
		if inEnv || inSecret {
			where := "backend.env."
			if inSecret {
				where = "backend.secret_env."
			}
			add(where+db.URLEnv, "is the URL lawsker-deploy builds from database.* (database.url_env), with database.password: remove it (no secret is written twice), or set database.url_env to another name")
		}
	}
	if c.Notifications.Email != "" && c.Notifications.SMTP == nil {
		add("notifications.email", "needs notifications.smtp (the mail server to send through)")
	}
	for from, to := range c.Verification.ConnectTo {
		if _, port, err := net.SplitHostPort(to); err != nil || port == "" {
			add("verification.connect_to."+from, "must be host:port, got %s", quote(to))
		}
	}
	if sn := c.Snapshots; sn.S3AccessKeyID.IsZero() != sn.S3SecretAccessKey.IsZero() {
		add("snapshots.s3_access_key_id", "and snapshots.s3_secret_access_key go together: set both or neither")
	} else if !sn.S3AccessKeyID.IsZero() && !strings.HasPrefix(sn.Store, "s3://") {
		add("snapshots.s3_access_key_id", "is only used with an s3:// snapshots.store")
	}
	if sn := c.Snapshots; !sn.AgeIdentity.IsZero() && sn.AgeRecipient == "" {
		add("snapshots.age_identity", "decrypts what snapshots.age_recipient encrypts; set the recipient too")
	}
	if c.Registry != nil && (c.Registry.Username == "") != c.Registry.Password.IsZero() {
		add("registry", "username and password go together: set both or neither")
	}
	if c.Registry != nil && c.Registry.Host != "" && !strings.HasPrefix(c.Backend.Image, c.Registry.Host+"/") && c.Backend.Image != "" {
		add("backend.image", "must be in registry.host %s (write %s/...)", quote(c.Registry.Host), c.Registry.Host)
	}
	if c.Backend.HostPortMin > c.Backend.HostPortMax {
		add("backend.host_port_min", "must not exceed backend.host_port_max (%d)", c.Backend.HostPortMax)
	}
	g := c.Backend.HealthGate
	if g.RequestTimeout.D() > g.Deadline.D() {
		add("backend.health_gate.request_timeout", "must not exceed backend.health_gate.deadline (%s)", g.Deadline)
	}
	if g.Interval.D() <= 0 {
		add("backend.health_gate.interval", "must be more than 0s")
	}
	for name, ports := range map[string][]int{"verification.ports.scan": c.Verification.Ports.Scan, "verification.ports.allow": c.Verification.Ports.Allow} {
		for i, p := range ports {
			if p < 1 || p > 65535 {
				add(indexPath(name, i), "must be 1-65535, got %d", p)
			}
		}
	}
	for i, ep := range c.Verification.Endpoints {
		for j, code := range ep.Expect {
			if code < 100 || code > 599 {
				add(indexPath(indexPath("verification.endpoints", i)+".expect", j), "must be an HTTP status (100-599), got %d", code)
			}
		}
	}
	for j, code := range c.Backend.HealthExpect.Status {
		if code < 100 || code > 599 {
			add(indexPath("backend.health_expect.status", j), "must be an HTTP status (100-599), got %d", code)
		}
	}
	if len(c.Backend.HealthExpect.Status) == 0 {
		add("backend.health_expect.status", "must list at least one status (the default is [200])")
	}
	for k := range c.Backend.HealthExpect.JSON {
		if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			add("backend.health_expect.json", "key %s must be a dotted field path such as \"checks.db\"", quote(k))
		}
	}
	if c.Verification.Login.Username != "" && c.Verification.Login.Password.IsZero() {
		add("verification.login.password", "is required with verification.login.username (a secret reference)")
	}
	if mp := c.Monitoring.MetricsPath; mp != "none" && (!strings.HasPrefix(mp, "/") || strings.ContainsAny(mp, " ?#\"")) {
		add("monitoring.metrics_path", `must be a path such as "/metrics", or "none" when the app serves no metrics; got %s`, quote(mp))
	}
	if lg := c.Monitoring.Logs; c.Monitoring.LogsOn() {
		if u, err := url.Parse(lg.URL); err == nil {
			if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
				add("monitoring.logs.url", "must be a loopback address such as http://127.0.0.1:9428 (the store is never exposed; lawsker-deploy reaches it through SSH), got %s", quote(lg.URL))
			}
			if u.Path != "" && u.Path != "/" {
				add("monitoring.logs.url", "must have no path, got %s", quote(lg.URL))
			}
		}
		if lg.Retention.D() < 24*time.Hour {
			add("monitoring.logs.retention", "must be at least 24h, got %s", lg.Retention)
		}
		if u, err := url.Parse(lg.URL); err == nil && u.Port() == strconv.Itoa(lg.SyslogPort) {
			add("monitoring.logs.syslog_port", "is the port of monitoring.logs.url too; the HTTP API and the syslog listener need two ports")
		}
	}
	workers, webs := 0, 0
	for i, t := range c.Targets {
		if len(t.Roles) == 0 {
			add(indexPath("targets", i)+".roles", `must list at least one role ("web", "worker")`)
		}
		if t.HasRole("worker") {
			workers++
		}
		if t.HasRole("web") {
			webs++
		}
	}
	if len(c.Targets) > 0 && !c.Targets[0].HasRole("web") {
		add("targets[0].roles", "the first target runs migrations, snapshots and monitoring beside nginx: it must have the web role")
	}
	if workers > 0 && len(c.Backend.WorkerCommand) == 0 {
		add("backend.worker_command", `is required when a target has the worker role (the argv workers run, e.g. ["celery", "worker"])`)
	}
	if b := strings.TrimSpace(c.Rollout.Batch); b != "" {
		n, pct := strings.CutSuffix(b, "%")
		v, err := strconv.Atoi(n)
		switch {
		case err != nil || v < 1 || pct && v > 100:
			add("rollout.batch", `must be a count of hosts ("1") or a percentage ("25%%"), got %s`, quote(b))
		case c.Rollout.Canary != nil:
			add("rollout.batch", "and rollout.canary exclude each other: a canary serves both releases on every host; keep one")
		}
	}
	if c.Execution.StepTimeout.D() <= 0 {
		add("execution.step_timeout", "must be more than 0s")
	}
}

// portRef is a {port} or {port.NAME} reference in a backend.env value.
var portRef = regexp.MustCompile(`\{port(?:\.([a-z][a-z0-9_]*))?\}`)

// portRefs lists the port names a value references ("" for {port}).
func portRefs(v string) []string {
	var names []string
	for _, m := range portRef.FindAllStringSubmatch(v, -1) {
		names = append(names, m[1])
	}
	return names
}

// ExpandPorts replaces {port} with port and {port.NAME} with ports[NAME].
func ExpandPorts(v string, port int, ports map[string]int) string {
	return portRef.ReplaceAllStringFunc(v, func(m string) string {
		name := portRef.FindStringSubmatch(m)[1]
		if name == "" {
			return strconv.Itoa(port)
		}
		return strconv.Itoa(ports[name])
	})
}

func portValidate(c *Config, add func(path, format string, args ...any)) {
	b := c.Backend
	seen := map[string]bool{}
	for i, n := range b.ExtraPorts {
		if seen[n] {
			add(fmt.Sprintf("backend.extra_ports[%d]", i), "repeats %s", quote(n))
		}
		seen[n] = true
	}
	if len(b.ExtraPorts) > 0 && b.Network != "host" {
		add("backend.extra_ports", `needs backend.network "host" (a bridge network publishes one port)`)
	}
	if _, clash := b.Env[b.PortEnv]; clash && b.Network == "host" {
		add("backend.env."+b.PortEnv, "is backend.port_env, which lawsker-deploy sets to the release's bare port: remove it, or put {port} in the variable the app reads (e.g. \"%s\": \"127.0.0.1:{port}\") and set port_env to a name the app ignores", b.PortEnv)
	}
	for k, v := range b.Env {
		for _, n := range portRefs(v) {
			if n != "" && !seen[n] {
				add("backend.env."+k, "references {port.%s}, which backend.extra_ports does not name", n)
			}
		}
	}
	if span := b.HostPortMax - b.HostPortMin + 1; b.HostPortMax >= b.HostPortMin && span < 2*(1+len(b.ExtraPorts)) {
		add("backend.host_port_max", "leaves %d ports from backend.host_port_min; two releases side by side need %d (%d each: their own and backend.extra_ports)", span, 2*(1+len(b.ExtraPorts)), 1+len(b.ExtraPorts))
	}
}
