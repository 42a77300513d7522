package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Legacy is Lawsker's deployment_config.json, as read by the Python toolkit
// this project replaces (backend/deployment/ in the Lawsker repository).
type Legacy struct {
	Domains                         []string           `json:"domains,omitempty" items:"domain"`
	SSLEnabled                      bool               `json:"ssl_enabled,omitempty"`
	MonitoringEnabled               bool               `json:"monitoring_enabled,omitempty"`
	ParallelExecution               bool               `json:"parallel_execution" default:"true"`
	BackupEnabled                   bool               `json:"backup_enabled" default:"true"`
	BackupRetentionDays             int                `json:"backup_retention_days,omitempty" min:"1" max:"3650" default:"30"`
	MaxWorkers                      int                `json:"max_workers,omitempty" min:"1" max:"64" default:"3"`
	BaseURL                         string             `json:"base_url,omitempty"`
	SSLBaseURL                      string             `json:"ssl_base_url,omitempty"`
	DatabaseURL                     string             `json:"database_url,omitempty"`
	RedisURL                        string             `json:"redis_url,omitempty"`
	PrometheusURL                   string             `json:"prometheus_url,omitempty"`
	GrafanaURL                      string             `json:"grafana_url,omitempty"`
	PerformanceThresholds           LegacyThresholds   `json:"performance_thresholds"`
	AutoRollbackEnabled             bool               `json:"auto_rollback_enabled" default:"true"`
	HealthCheckThreshold            int                `json:"health_check_threshold,omitempty" min:"1" max:"100" default:"3"`
	ErrorRateThreshold              float64            `json:"error_rate_threshold" min:"0" max:"1" default:"0.1"`
	PerformanceDegradationThreshold float64            `json:"performance_degradation_threshold,omitempty" min:"1" max:"100" default:"2"`
	Notification                    LegacyNotification `json:"notification"`
}

// LegacyThresholds is the legacy performance_thresholds object.
type LegacyThresholds struct {
	ResponseTimeMS     int `json:"response_time_ms,omitempty" min:"1" max:"600000" default:"1000"`
	DatabaseQueryMS    int `json:"database_query_ms,omitempty" min:"1" max:"600000" default:"100"`
	MemoryUsagePercent int `json:"memory_usage_percent,omitempty" min:"1" max:"100" default:"80"`
	CPUUsagePercent    int `json:"cpu_usage_percent,omitempty" min:"1" max:"100" default:"80"`
	DiskUsagePercent   int `json:"disk_usage_percent,omitempty" min:"1" max:"100" default:"90"`
}

// LegacyNotification is the legacy notification object.
type LegacyNotification struct {
	Email      string `json:"email,omitempty" format:"email"`
	WebhookURL string `json:"webhook_url,omitempty"`
}

// legacyKeys are keys only the legacy format has; one of them (and no
// "version") marks a file as legacy.
var legacyKeys = []string{"ssl_enabled", "database_url", "base_url", "backup_enabled", "parallel_execution", "performance_thresholds", "auto_rollback_enabled"}

func isLegacy(root *node) bool {
	if _, ok := root.lookup("version"); ok {
		return false
	}
	for _, k := range legacyKeys {
		if _, ok := root.lookup(k); ok {
			return true
		}
	}
	return false
}

// varRef matches ${NAME} in legacy values.
var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ParseLegacy reads a legacy file (it must be one) and converts it.
func ParseLegacy(data []byte, opts ImportOptions) (*Loaded, error) {
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	if root.kind != kindObject {
		return nil, Problems{{Line: root.line, Message: fmt.Sprintf("the file must hold a JSON object, got %s", root.kind)}}
	}
	if !isLegacy(root) {
		return nil, Problems{{Message: "this is not a Lawsker deployment_config.json (it has \"version\" or none of " + strings.Join(legacyKeys, ", ") + ")"}}
	}
	return parseLegacy(root, opts)
}

func parseLegacy(root *node, opts ImportOptions) (*Loaded, error) {
	var c collector
	var l Legacy
	decodeInto(root, &l, &c)
	if err := c.err(); err != nil {
		return nil, err
	}
	lines := map[string]int{}
	pathLines(root, "", lines)
	cfg, notes := l.convert(opts, &c, lines)
	if err := c.err(); err != nil {
		return nil, err
	}
	// The result must pass the native rules too; report against the native
	// paths, saying they came from an import.
	if err := cfg.Validate(); err != nil {
		ps, _ := err.(Problems)
		for i := range ps {
			ps[i].Message += " (in the configuration converted from the legacy file)"
		}
		return nil, ps
	}
	return &Loaded{Config: cfg, Format: FormatLegacy, Notes: notes}, nil
}

func (l *Legacy) convert(opts ImportOptions, c *collector, lines map[string]int) (*Config, []string) {
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	verb := opts.Verb
	if verb == "" {
		verb = "config import"
	}
	app := opts.App
	if app == "" {
		app = "lawsker"
		note("app: the legacy file names no application; using %q (%s --app changes it)", app, verb)
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
		note("targets[0].host: the legacy file names no host (the old toolkit ran on the server itself); using %s (%s --host changes it)", host, verb)
	}
	user := opts.User
	if user == "" {
		user = "deploy"
	}
	image := opts.Image
	if image == "" {
		image = "127.0.0.1:5000/" + app + "/backend"
		note("backend.image: the legacy file names no image; using %s (%s --image changes it)", image, verb)
	}

	// Start from the native defaults, then apply what the legacy file says.
	cfg := Defaults[Config]()
	cfg.Version, cfg.App = CurrentVersion, app
	target := Defaults[Target]()
	target.Name, target.Host, target.SSH.User = "production", host, user
	cfg.Targets = []Target{target}
	cfg.Backend.Image = image
	cfg.Backend.MigrateCommand = []string{"alembic", "upgrade", "head"}
	cfg.Frontend = &Frontend{Source: "frontend", BuildCommand: []string{"npm", "run", "build"}, Output: "dist"}
	cfg.Backend.Routes = []string{"/api/"}
	note("backend, frontend: assumed Lawsker's layout (backend/ migrated with `alembic upgrade head`, frontend/ built with `npm run build` into dist/, the API under /api/: backend.routes); edit the converted file if yours differs")
	cfg.Domains = l.Domains
	cfg.Verification.Endpoints = LawskerEndpoints()
	cfg.Verification.UploadPath = "/api/v1/upload"
	cfg.Verification.Login.Path = "/api/v1/auth/login"
	note("verification: Lawsker's API checks (health, users/me, cases, statistics, login, upload), as the old toolkit ran them")

	cfg.TLS.Enabled = l.SSLEnabled
	if l.SSLEnabled {
		cfg.TLS.Email = l.Notification.Email
		note("tls.email: using notification.email %s as the ACME account contact", l.Notification.Email)
	}
	cfg.Monitoring.Enabled = l.MonitoringEnabled
	setURL := func(dst *string, path, v string) {
		if v == "" {
			return
		}
		if varRef.MatchString(v) {
			c.add(path, lines[path], "holds %s; the native format keeps secrets only in secret fields, so write the URL out", varRef.FindString(v))
			return
		}
		if !formats["httpurl"].ok(v) {
			c.add(path, lines[path], "%s, got %s", formats["httpurl"].says, quote(v))
			return
		}
		*dst = v
	}
	setURL(&cfg.Monitoring.PrometheusURL, "prometheus_url", l.PrometheusURL)
	setURL(&cfg.Monitoring.GrafanaURL, "grafana_url", l.GrafanaURL)
	setURL(&cfg.Verification.BaseURL, "base_url", l.BaseURL)
	setURL(&cfg.Verification.SSLBaseURL, "ssl_base_url", l.SSLBaseURL)
	setURL(&cfg.Notifications.WebhookURL, "notification.webhook_url", l.Notification.WebhookURL)
	if u, err := url.Parse(l.BaseURL); err == nil && u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err == nil && p > 0 && p < 65536 {
			cfg.Backend.Port = p
		}
	}
	if l.Notification.Email != "" {
		note("notifications.email: the legacy file names no mail server; add notifications.smtp and notifications.email to get email (webhook notifications are kept)")
	}

	cfg.Execution.Parallel = l.ParallelExecution
	cfg.Execution.MaxWorkers = l.MaxWorkers
	cfg.Snapshots.Enabled = l.BackupEnabled
	cfg.Snapshots.RetentionDays = l.BackupRetentionDays
	t := l.PerformanceThresholds
	cfg.Verification.Thresholds = Thresholds{
		ResponseTimeMS: t.ResponseTimeMS, DatabaseQueryMS: t.DatabaseQueryMS,
		MemoryUsagePercent: t.MemoryUsagePercent, CPUUsagePercent: t.CPUUsagePercent, DiskUsagePercent: t.DiskUsagePercent,
	}
	cfg.Rollback.Auto = l.AutoRollbackEnabled
	cfg.Rollback.HealthCheckThreshold = l.HealthCheckThreshold
	cfg.Rollback.ErrorRateThreshold = l.ErrorRateThreshold
	cfg.Rollback.PerformanceDegradationThreshold = l.PerformanceDegradationThreshold

	if l.DatabaseURL != "" {
		cfg.Database = convertDatabaseURL(l.DatabaseURL, c, lines["database_url"])
	}
	if l.RedisURL != "" {
		cfg.Redis = convertRedisURL(l.RedisURL, c, lines["redis_url"])
	}
	return &cfg, notes
}

// secretInURL splits a legacy URL's password: "${NAME}" becomes env:NAME; a
// password written out is refused (it would be copied in clear).
func secretInURL(raw, path string, line int, c *collector) (clean string, ref SecretRef, ok bool) {
	// ${...} is not valid in a URL's user info; stand it in with a marker.
	const marker = "LAWSKERSECRETREF"
	var refName string
	replaced := varRef.ReplaceAllStringFunc(raw, func(m string) string {
		refName = varRef.FindStringSubmatch(m)[1]
		return marker
	})
	u, err := url.Parse(replaced)
	if err != nil || u.Host == "" {
		c.add(path, line, "must be a URL such as scheme://user:${PASSWORD}@host:port/name")
		return "", "", false
	}
	if strings.Contains(u.Host+u.Path+u.RawQuery, marker) || (u.User != nil && u.User.Username() == marker) {
		c.add(path, line, "a ${VAR} reference is only understood as the password")
		return "", "", false
	}
	if u.User != nil {
		if pw, set := u.User.Password(); set {
			if pw != marker {
				c.add(path, line, "holds a password in clear; write ${DB_PASSWORD} (or another variable name) in its place and set that variable in the environment")
				return "", "", false
			}
			ref = SecretRef("env:" + refName)
		}
		u.User = url.User(u.User.Username())
	}
	return u.String(), ref, true
}

func convertDatabaseURL(raw string, c *collector, line int) *Database {
	clean, ref, ok := secretInURL(raw, "database_url", line, c)
	if !ok {
		return nil
	}
	u, _ := url.Parse(clean)
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		c.add("database_url", line, "must be a postgresql:// URL, got scheme %s", quote(u.Scheme))
		return nil
	}
	db := &Database{Host: u.Hostname(), Port: 5432, Name: strings.TrimPrefix(u.Path, "/"), SSLMode: "prefer",
		PoolSizeEnv: "DB_POOL_SIZE", MaxOverflowEnv: "DB_MAX_OVERFLOW", Password: ref}
	if u.User != nil {
		db.User = u.User.Username()
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			c.add("database_url", line, "port must be 1-65535, got %s", quote(p))
			return nil
		}
		db.Port = n
	}
	if m := u.Query().Get("sslmode"); m != "" {
		db.SSLMode = m
	}
	if ref.IsZero() {
		c.add("database_url", line, "has no password; write user:${DB_PASSWORD}@ and set DB_PASSWORD in the environment")
		return nil
	}
	if db.Host == "" || net.ParseIP(db.Host) == nil && !hostnameOnly.MatchString(db.Host) {
		c.add("database_url", line, "host %s %s", quote(db.Host), formats["host"].says)
		return nil
	}
	return db
}

func convertRedisURL(raw string, c *collector, line int) *Redis {
	clean, ref, ok := secretInURL(raw, "redis_url", line, c)
	if !ok {
		return nil
	}
	return &Redis{URL: clean, Password: ref}
}

// LawskerEndpoints are the API checks the old toolkit ran against Lawsker.
func LawskerEndpoints() []Endpoint {
	protected := []int{200, 401, 403}
	return []Endpoint{
		{Method: "GET", Path: "/api/v1/health", Expect: []int{200}},
		{Method: "GET", Path: "/api/v1/users/me", Expect: protected},
		{Method: "GET", Path: "/api/v1/cases", Expect: protected},
		{Method: "GET", Path: "/api/v1/statistics", Expect: protected},
	}
}
