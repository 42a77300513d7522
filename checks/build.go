package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
)

// Env is what a verification run needs beyond the configuration.
type Env struct {
	Config   *config.Config
	Resolver *config.Resolver
	// BaseURL overrides verification.base_url.
	BaseURL string
	// Categories limits the run (empty: verification.categories).
	Categories []Category
	// Dial reaches services as the first target does (its SSH tunnel);
	// nil dials directly from here.
	Dial pgconfig.Dialer
	// Stat reads file modes on the first target; nil skips the
	// file-permission check.
	Stat StatFunc
	// System reads the first target's CPU, memory and disk figures; nil
	// skips the system resources check.
	System SystemReader
	// Roots verifies TLS (nil: the system's roots).
	Roots *x509.CertPool
	// Baseline from an earlier passing run, for the comparison check.
	Baseline Baseline
	// Site verifies any URL without a deployment (verify --base-url with
	// no configuration): the health of / is a 200, a page or not (its
	// assets load), instead of the backend's health answer.
	Site bool
	// BackendPorts are the new release's ports on each target (by name),
	// which the open-ports check requires to answer on loopback only.
	BackendPorts map[string][]int
	// Route reaches some hosts through a target's SSH connection (nil:
	// every connection is dialled from here).
	Route *Route
}

// BaseURL is the URL the suite tests: --base-url, verification.base_url,
// https://<first domain> when TLS is on, else the first target over http on
// nginx's port.
func BaseURL(cfg *config.Config, override string) string {
	switch {
	case override != "":
		return strings.TrimRight(override, "/")
	case cfg.Verification.BaseURL != "":
		return strings.TrimRight(cfg.Verification.BaseURL, "/")
	case cfg.TLS.Enabled && len(cfg.Domains) > 0:
		return "https://" + strings.TrimPrefix(cfg.Domains[0], "*.")
	}
	t := cfg.Primary()
	host := t.Host
	if t.Nginx.Listen != 80 {
		host = net.JoinHostPort(t.Host, strconv.Itoa(t.Nginx.Listen))
	}
	return "http://" + host
}

// Build turns the configuration into the checks of the chosen categories.
// The baseline comparison runs after them (see Verify).
func Build(env Env) ([]Check, error) {
	cfg := env.Config
	v := cfg.Verification
	base := BaseURL(cfg, env.BaseURL)
	want := env.Categories
	if len(want) == 0 {
		for _, c := range v.Categories {
			want = append(want, Category(c))
		}
	}
	on := func(c Category) bool { return slices.Contains(want, c) }
	timeout := v.CheckTimeout.D()
	h := NewHTTP(min(timeout, 10*time.Second), tlsConfig(env.Roots))
	h.Connect(v.ConnectTo, env.Route)
	var checks []Check
	add := func(name string, cat Category, run func(context.Context) (Result, error)) {
		if on(cat) {
			checks = append(checks, Check{Name: name, Category: cat, Timeout: timeout, Run: run})
		}
	}
	health := cfg.Backend.HealthPath

	if env.Site {
		add("health /", Health, SiteHealth(h, base+"/"))
	} else {
		add("backend health "+health, Health, BackendHealth(h, base+health, cfg.Backend.HealthExpect))
	}
	var pgCfg *pgx.ConnConfig
	if db := cfg.Database; db != nil {
		pw, err := env.Resolver.Resolve(db.Password)
		if err != nil && (on(Health) || on(Functional) || on(Performance)) {
			return nil, fmt.Errorf("database.password: %w", err)
		}
		if pgCfg, err = pgconfig.For(*db, db.User, pw, db.Name, env.Dial); err != nil {
			return nil, err
		}
		add("postgresql", Health, Postgres(pgCfg))
	}
	if rd := cfg.Redis; rd != nil {
		opts, err := redis.ParseURL(rd.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		if !rd.Password.IsZero() {
			if opts.Password, err = env.Resolver.Resolve(rd.Password); err != nil {
				return nil, fmt.Errorf("redis.password: %w", err)
			}
		}
		if env.Dial != nil {
			opts.Dialer = func(ctx context.Context, _, addr string) (net.Conn, error) { return env.Dial(ctx, addr) }
		}
		add("redis", Health, Redis(opts))
	}
	if cfg.Frontend != nil {
		add("frontend", Health, Frontend(h, base+"/"))
		// Each route, as nginx serves it: the backend answers, not the
		// frontend's index.html.
		for _, r := range cfg.Routes() {
			add("route "+r.String(), Functional, RouteReachesBackend(h, base, r.Path))
		}
	}
	if cfg.Monitoring.Enabled {
		add("prometheus", Health, Prometheus(h, cfg.Monitoring.PrometheusURL))
		if g := cfg.Monitoring.GrafanaImage; g != "none" {
			add("grafana", Health, Grafana(h, cfg.Monitoring.GrafanaURL))
		}
	}

	endpoints := v.Endpoints
	if len(endpoints) == 0 { // derived from what the configuration states
		endpoints = []config.Endpoint{{Method: "GET", Path: health, Expect: []int{200}}}
	}
	for _, ep := range endpoints {
		add(fmt.Sprintf("api %s %s", ep.Method, ep.Path), Functional, API(h, base, Endpoint{
			Method: ep.Method, Path: ep.Path, Headers: ep.Headers, Body: ep.Body, Expect: ep.Expect, JSONFields: ep.JSONFields}))
	}
	var token string
	login := Login{Path: v.Login.Path, Form: v.Login.Form, Username: v.Login.Username, TokenField: v.Login.TokenField, ProtectedPath: v.Login.ProtectedPath}
	if login.Username != "" {
		pw, err := env.Resolver.Resolve(v.Login.Password)
		if err != nil {
			return nil, fmt.Errorf("verification.login.password: %w", err)
		}
		login.Password = pw
	}
	if login.Path != "" {
		add("authentication "+login.Path, Functional, AuthFlow(h, base, login, &token))
	}
	if pgCfg != nil {
		add("database transaction", Functional, DBTransaction(pgCfg))
	}

	th := v.Thresholds
	limit := time.Duration(th.ResponseTimeMS) * time.Millisecond
	for _, ep := range endpoints {
		if ep.Method == "GET" {
			add("response time "+ep.Path, Performance, ResponseTime(h, base+ep.Path, v.Requests, limit))
		}
	}
	loadPath := v.Load.Path
	if loadPath == "" {
		loadPath = health
	}
	add("load "+loadPath, Performance, LoadTest(base+loadPath, LoadOptions{Concurrency: v.Load.Concurrency, Duration: v.Load.Duration.D(), Host: h.Host, TLS: tlsConfig(env.Roots), ConnectTo: v.ConnectTo, Route: env.Route},
		limit, cfg.Rollback.ErrorRateThreshold))
	if env.System != nil && on(Performance) {
		add("system resources "+cfg.Primary().Name, Performance, System(env.System, cfg.Primary().Root,
			SystemThresholds{CPU: th.CPUUsagePercent, Memory: th.MemoryUsagePercent, Disk: th.DiskUsagePercent}))
		// After the others: measured during the suite's own load test, the
		// CPU would be ours.
		checks[len(checks)-1].Later = true
	}
	if pgCfg != nil {
		add("database latency", Performance, DBLatency(pgCfg, 50, time.Duration(th.DatabaseQueryMS)*time.Millisecond))
	}

	tlsBase := v.SSLBaseURL
	if tlsBase == "" && strings.HasPrefix(base, "https://") {
		tlsBase = base
	}
	if tlsBase != "" {
		u, err := url.Parse(tlsBase)
		if err != nil {
			return nil, fmt.Errorf("verification.ssl_base_url: %w", err)
		}
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		}
		domains := cfg.Domains
		if len(domains) == 0 {
			domains = []string{u.Hostname()}
		}
		for _, d := range domains {
			if !strings.HasPrefix(d, "*.") {
				add("tls "+d, Security, TLSCheck(MapAddr(v.ConnectTo, addr), d, env.Roots, env.Route))
			}
		}
		add("security headers", Security, Headers(h, tlsBase+"/", v.MinHeaderScore))
	} else {
		add("security headers", Security, Headers(h, base+"/", v.MinHeaderScore))
	}
	for _, t := range cfg.Targets {
		if env.Route.Routes(t.Host) {
			// A scan through the target's own SSH connection would see its
			// loopback, not what the network sees: no verdict, never a pass.
			add("open ports "+t.Name, Security, func(context.Context) (Result, error) {
				return Skipped("not scanned: %s; scan %s from a machine on its network (lawsker-deploy verify --category security)", env.Route.Why, t.Host), nil
			})
			continue
		}
		add("open ports "+t.Name, Security, Ports(t.Host, v.Ports.Scan, append(slices.Clone(v.Ports.Allow), t.SSH.Port, t.Nginx.Listen), env.BackendPorts[t.Name]...))
	}
	if env.Stat != nil && len(v.ProtectedFiles) > 0 {
		var patterns []string
		for _, p := range v.ProtectedFiles {
			if !strings.HasPrefix(p, "/") {
				p = path.Join(cfg.Primary().Root, cfg.App, p)
			}
			patterns = append(patterns, p)
		}
		add("file permissions", Security, FilePermissions(env.Stat, patterns))
	}
	if v.UploadPath != "" {
		// After the authentication check in the suite's order; it reads the
		// token that check obtained (the suite runs Functional checks in
		// parallel, so upload waits for it: see Verify).
		add("upload "+v.UploadPath, Functional, Upload(h, base, v.UploadPath, &token))
		if len(checks) > 0 && checks[len(checks)-1].Category == Functional {
			checks[len(checks)-1].Later = true
		}
	}
	return checks, nil
}

func tlsConfig(roots *x509.CertPool) *tls.Config {
	if roots == nil {
		return nil
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// Verify runs the suite: the checks in parallel, then those that need an
// earlier one's outcome (the upload uses the login's token), then the
// comparison of the performance figures with the baseline.
func Verify(ctx context.Context, env Env, opts Options) (*Suite, error) {
	all, err := Build(env)
	if err != nil {
		return nil, err
	}
	var first, later []Check
	for _, c := range all {
		if c.Later {
			later = append(later, c)
		} else {
			first = append(first, c)
		}
	}
	start := time.Now()
	s := Run(ctx, first, opts)
	if len(later) > 0 {
		opts.Deadline = max(opts.Deadline-time.Since(start), time.Second)
		s.Results = append(s.Results, Run(ctx, later, opts).Results...)
	}
	perf := slices.ContainsFunc(s.Results, func(r Result) bool { return r.Category == Performance })
	if perf {
		r, _ := CompareBaseline(s.Results, env.Baseline, env.Config.Rollback.PerformanceDegradationThreshold)
		r.Name, r.Category = "baseline", Performance
		s.Results = append(s.Results, r)
	}
	order := map[Category]int{}
	for i, c := range Categories {
		order[c] = i
	}
	sort.SliceStable(s.Results, func(a, b int) bool { return order[s.Results[a].Category] < order[s.Results[b].Category] })
	s.Duration = time.Since(start)
	s.Millis = s.Duration.Milliseconds()
	return s, nil
}
