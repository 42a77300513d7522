package checks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func run1(t *testing.T, c Check) Result {
	t.Helper()
	s := Run(t.Context(), []Check{c}, Options{})
	require.Len(t, s.Results, 1)
	return s.Results[0]
}

func TestBackendHealth(t *testing.T) {
	srv := testBackend(t)
	h := NewHTTP(2*time.Second, nil)
	for _, tc := range []struct {
		path   string
		status Status
		msg    string
	}{
		{"/api/v1/health", Pass, `: 200 "{\"status\":\"ok\",\"version\":\"v1\"}"`},
		{"/lying/health", Fail, `: 200, but the body says status "error"`},
		{"/failing", Fail, ": status 500 (healthy: [200]): \"boom\""},
		{"/malformed/health", Fail, ": 200, but the JSON body does not parse: unexpected end of JSON input"},
		{"/huge", Fail, "the response body is larger than 1048576 bytes"},
		{"/loop", Fail, "more than 5 redirects (last to " + srv.URL + "/loop): a redirect loop?"},
		{"/slow", Fail, "Client.Timeout exceeded"},
	} {
		r := run1(t, Check{Name: "backend", Category: Health, Run: BackendHealth(h, srv.URL+tc.path, config.HealthExpect{})})
		assert.Equal(t, tc.status, r.Status, tc.path)
		assert.Contains(t, r.Message, tc.msg, tc.path)
	}
}

// backend.health_expect says what a healthy answer is: statuses, a text,
// JSON fields and their values. An HTML page is never one.
func TestHealthExpect(t *testing.T) {
	srv := testBackend(t)
	h := NewHTTP(2*time.Second, nil)
	for _, tc := range []struct {
		want   config.HealthExpect
		status Status
		msg    string
	}{
		{config.HealthExpect{JSON: map[string]string{"status": "ok", "version": "v1"}}, Pass, ": 200 "},
		{config.HealthExpect{JSON: map[string]string{"version": "v2"}}, Fail, `: 200, but version is "v1", not "v2" (backend.health_expect.json)`},
		{config.HealthExpect{JSON: map[string]string{"checks.db": "up"}}, Fail, `: 200, but the JSON body has no checks.db (backend.health_expect.json)`},
		{config.HealthExpect{Body: `"ok"`}, Pass, ": 200 "},
		{config.HealthExpect{Body: "SERVING"}, Fail, `: 200, but the body does not contain "SERVING" (backend.health_expect.body)`},
		{config.HealthExpect{Status: []int{204}}, Fail, `: status 200 (healthy: [204])`},
	} {
		r := run1(t, Check{Name: "backend", Category: Health, Run: BackendHealth(h, srv.URL+"/api/v1/health", tc.want)})
		assert.Equal(t, tc.status, r.Status, "%+v: %s", tc.want, r.Message)
		assert.Contains(t, r.Message, tc.msg, "%+v", tc.want)
	}
	assert.NoError(t, HealthAnswer(config.HealthExpect{Status: []int{200, 204}}, 204, nil, ""))
	assert.ErrorContains(t, HealthAnswer(config.HealthExpect{Body: "<title>"}, 200, []byte("<!doctype html><title>app</title>"), "text/html"),
		"it is an HTML page", "the text an HTML page contains does not make it a health answer")
	assert.ErrorContains(t, HealthAnswer(config.HealthExpect{}, 200, []byte("not json"), "application/json"), "the JSON body does not parse")
}

func TestClosedPortFailsFast(t *testing.T) {
	h := NewHTTP(2*time.Second, nil)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/health", testenv.FreePort(t))
	r := run1(t, Check{Name: "backend", Category: Health, Run: BackendHealth(h, url, config.HealthExpect{})})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "connection refused")
	assert.Less(t, r.Duration, 2*time.Second)
}

func TestPostgresCheck(t *testing.T) {
	pg := testenv.StartPostgres(t)
	cfg, err := pgx.ParseConfig(pg.DSN("postgres"))
	require.NoError(t, err)
	r := run1(t, Check{Name: "postgres", Category: Health, Run: Postgres(cfg)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Contains(t, r.Message, "of 50 connections in use")
	assert.Contains(t, r.Message, "PostgreSQL 15.")

	cfg.Password = "wrong-password"
	r = run1(t, Check{Name: "postgres", Category: Health, Run: Postgres(cfg)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "password authentication failed")
	assert.NotContains(t, r.Message, "wrong-password")
}

func TestRedisCheck(t *testing.T) {
	rd := testenv.StartRedis(t)
	r := run1(t, Check{Name: "redis", Category: Health, Run: Redis(&redis.Options{Addr: rd.Addr})})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Contains(t, r.Message, "PONG")
	c := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer c.Close()
	require.NoError(t, c.ConfigSet(context.Background(), "maxmemory", "1mb").Err())
	r = run1(t, Check{Name: "redis", Category: Health, Run: Redis(&redis.Options{Addr: rd.Addr})})
	assert.Equal(t, Warn, r.Status, r.Message)
	assert.Contains(t, r.Message, "over 90%")
}

func TestFrontendCheck(t *testing.T) {
	srv := testBackend(t)
	h := NewHTTP(2*time.Second, nil)
	r := run1(t, Check{Name: "frontend", Category: Health, Run: Frontend(h, srv.URL+"/")})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Equal(t, "GET "+srv.URL+"/: HTML, 2 assets load", r.Message, "the off-site asset is not fetched")
	r = run1(t, Check{Name: "frontend", Category: Health, Run: Frontend(h, srv.URL+"/broken/")})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "1 of 1 assets do not load: /assets/missing.js (status 404)")
}

func TestPrometheusCheck(t *testing.T) {
	srv := testBackend(t)
	target := strings.TrimPrefix(srv.URL, "http://")
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := testenv.StartPrometheus(t, fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: backend\n  static_configs:\n  - targets: [%q]\n", target))
	h := NewHTTP(2*time.Second, nil)
	var r Result
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if r = run1(t, Check{Name: "prometheus", Category: Health, Run: Prometheus(h, p.URL)}); r.Status == Pass {
			break
		}
	}
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Equal(t, "Prometheus ready, 1 scrape targets up", r.Message)

	p2 := testenv.StartPrometheus(t, fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: gone\n  static_configs:\n  - targets: [%q]\n", closed))
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if r = run1(t, Check{Name: "prometheus", Category: Health, Run: Prometheus(h, p2.URL)}); strings.Contains(r.Message, "(down:") {
			break
		}
	}
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "1 of 1 scrape targets are not up: http://"+closed+"/metrics (down:")
}

// Grafana cannot be installed on these machines (no Debian package, no
// download): its check runs against a recorded /api/health answer of a
// real Grafana 10, served from loopback.
func TestGrafanaCheckAgainstARecordedResponse(t *testing.T) {
	answer := `{"commit":"1e84fede543acc892d2a2515187e545eb047f237","database":"ok","version":"10.2.3"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/health" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, answer)
	}))
	defer srv.Close()
	h := NewHTTP(2*time.Second, nil)
	r := run1(t, Check{Name: "grafana", Category: Health, Run: Grafana(h, srv.URL)})
	assert.Equal(t, Pass, r.Status)
	assert.Equal(t, "Grafana 10.2.3 healthy", r.Message)
	answer = `{"database":"failing","version":"10.2.3"}`
	r = run1(t, Check{Name: "grafana", Category: Health, Run: Grafana(h, srv.URL)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, `Grafana's database is "failing"`)
}

func TestSuiteRunsInParallelWithinItsDeadline(t *testing.T) {
	var checks []Check
	for i := range 10 {
		checks = append(checks, Check{Name: fmt.Sprintf("sleep-%d", i), Category: Performance, Timeout: time.Second,
			Run: func(ctx context.Context) (Result, error) {
				select {
				case <-time.After(200 * time.Millisecond):
					return Passed("slept"), nil
				case <-ctx.Done():
					return Result{}, ctx.Err()
				}
			}})
	}
	checks = append(checks,
		Check{Name: "hangs", Category: Health, Timeout: 300 * time.Millisecond, Run: func(context.Context) (Result, error) {
			select {} // ignores its context
		}},
		Check{Name: "panics", Category: Security, Run: func(context.Context) (Result, error) { panic("nil map") }},
		Check{Name: "skips", Category: Functional, Run: func(context.Context) (Result, error) { return Skipped("no credentials configured"), nil }},
	)
	start := time.Now()
	s := Run(t.Context(), checks, Options{Parallel: 16})
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, Health, s.Results[0].Category, "results in category order")
	byName := map[string]Result{}
	for _, r := range s.Results {
		byName[r.Name] = r
	}
	assert.Equal(t, "no answer within 300ms", byName["hangs"].Message)
	assert.Equal(t, "panic: nil map", byName["panics"].Message)
	assert.Equal(t, Skip, byName["skips"].Status)
	assert.Equal(t, 10, s.Count(Pass))
	assert.True(t, s.Failed())
}

func TestRenderers(t *testing.T) {
	s := &Suite{Results: []Result{
		{Name: "backend", Category: Health, Status: Pass, Message: "GET /: 200", Millis: 3},
		{Name: "headers", Category: Security, Status: Fail, Message: "score 40 < 70 | missing HSTS", Millis: 1},
		{Name: "login", Category: Functional, Status: Skip, Message: "no credentials"},
	}, Duration: 1500 * time.Millisecond}
	x, err := JUnit(s)
	require.NoError(t, err)
	assert.Contains(t, string(x), `<testsuite name="security" tests="1" failures="1" skipped="0">`)
	assert.Contains(t, string(x), `<failure message="score 40 &lt; 70 | missing HSTS">`)
	assert.Contains(t, string(x), `<skipped message="no credentials"></skipped>`)
	md := Markdown(s, "Verification")
	assert.Contains(t, md, "## Verification: FAILED")
	assert.Contains(t, md, `| ❌ | headers | security | 1 ms | score 40 < 70 \| missing HSTS |`)
	assert.Contains(t, Table(s), "1 passed, 1 failed, 0 warnings, 1 skipped in 1.5 s")
}

// A real nginx serving an SPA with the usual fallback (try_files ...
// /index.html): a health path the backend does not get, and an asset that
// is missing, are both answered 200 with index.html. Neither passes.
func TestTheSPAFallbackIsNotAnAnswer(t *testing.T) {
	n := testenv.StartNginx(t, `  server { listen 127.0.0.1:{{PORT}}; root {{DIR}}/www; index index.html;
    location / { try_files $uri $uri/ /index.html; } }`)
	www := n.Dir + "/www"
	require.NoError(t, os.MkdirAll(www+"/assets", 0o755))
	require.NoError(t, os.WriteFile(www+"/index.html", []byte(`<!doctype html><link rel="stylesheet" href="/assets/app.css"><script src="/assets/app.js"></script>`), 0o644))
	require.NoError(t, os.WriteFile(www+"/assets/app.js", []byte("console.log(1)"), 0o644))
	base := fmt.Sprintf("http://127.0.0.1:%d", n.Port)
	h := NewHTTP(2*time.Second, nil)

	r := run1(t, Check{Name: "backend", Category: Health, Run: BackendHealth(h, base+"/healthcheck", config.HealthExpect{})})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "200, but it is an HTML page")
	assert.Contains(t, r.Message, "the frontend's fallback (index.html) answered, so the health path does not reach the backend")

	r = run1(t, Check{Name: "frontend", Category: Health, Run: Frontend(h, base+"/")})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, `1 of 2 assets do not load: /assets/app.css (answered with an HTML page, "text/html": the frontend's fallback for a missing file)`)
}
