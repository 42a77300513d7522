package deploy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// The default verification suite against a real deployment of the sample
// app: nginx, the backend, PostgreSQL and Redis reached through the
// target's SSH tunnel, Prometheus scraping the backend. Grafana cannot be
// installed here: a recorded /api/health answer of Grafana 10 stands in.
func TestDefaultSuiteAgainstADeployment(t *testing.T) {
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	r := newRig(t)
	closed := testenv.FreePort(t)
	cfg := r.config(t, fmt.Sprintf(`, "database": {"host": "127.0.0.1", "port": %d, "name": "postgres", "user": %q, "password": "env:PG_PW", "sslmode": "disable"},
	  "redis": {"url": "redis://%s/0"},
	  "verification": {"login": {"path": "/api/v1/auth/login", "username": "demo@sample.test", "password": "env:SAMPLE_LOGIN_PASSWORD"},
	    "endpoints": [{"path": "/api/v1/health"}, {"path": "/api/v1/users/me", "expect": [200, 401, 403]}, {"path": "/api/v1/cases", "expect": [200, 401, 403]},
	      {"path": "/api/v1/statistics", "expect": [200, 401, 403]}], "upload_path": "/api/v1/upload",
	    "load": {"duration": "2s"}, "ports": {"scan": [%d], "allow": []},
	    "thresholds": {"cpu_usage_percent": 100}}`, pg.Port, pg.User, rd.Addr, closed))
	cfg.Backend.SecretEnv["SAMPLE_LOGIN_PASSWORD"] = "env:SAMPLE_LOGIN_PASSWORD"
	env := map[string]string{"SAMPLE_TOKEN": "token-s3cret-value", "PG_PW": pg.Password, "SAMPLE_LOGIN_PASSWORD": "demo-login-password"}
	resolver := &config.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	run := r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1"), func(req *Request) { req.Resolver = resolver })
	require.NoError(t, run.res.Err())
	port := run.d.Outcomes()[0].Port

	prom := testenv.StartPrometheus(t, fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: backend\n  static_configs:\n  - targets: [\"127.0.0.1:%d\"]\n", port))
	grafana := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"commit":"1e84fede543acc892d2a2515187e545eb047f237","database":"ok","version":"10.2.3"}`)
	}))
	defer grafana.Close()
	cfg.Monitoring = config.Monitoring{Enabled: true, PrometheusURL: prom.URL, GrafanaURL: grafana.URL}
	host := connectRig(t, r)
	// Wait (bounded) for Prometheus to discover and scrape its target.
	ph := checks.NewHTTP(2*time.Second, nil)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if res, _ := checks.Prometheus(ph, prom.URL)(t.Context()); res.Status == checks.Pass {
			break
		}
	}

	venv := checks.Env{Config: cfg, Resolver: resolver, BaseURL: fmt.Sprintf("http://127.0.0.1:%d", r.AppPort), Dial: host.DialTCP, Stat: host.StatGlob, System: host}
	start := time.Now()
	s, err := checks.Verify(t.Context(), venv, checks.Options{})
	require.NoError(t, err)
	t.Logf("default suite: %d checks in %s\n%s", len(s.Results), time.Since(start).Round(time.Millisecond), checks.Table(s))
	for _, res := range s.Results {
		want := checks.Pass
		if res.Name == "baseline" {
			want = checks.Skip // the first run has no baseline
		}
		assert.Equal(t, want, res.Status, "%s: %s", res.Name, res.Message)
	}
	names := map[string]bool{}
	for _, res := range s.Results {
		names[res.Name] = true
	}
	for _, n := range []string{"backend health /api/v1/health", "postgresql", "redis", "frontend", "prometheus", "grafana",
		"api GET /api/v1/users/me", "route /api/*", "authentication /api/v1/auth/login", "upload /api/v1/upload", "database transaction",
		"response time /api/v1/statistics", "load /api/v1/health", "database latency", "system resources local", "security headers", "open ports local", "file permissions"} {
		assert.True(t, names[n], "the suite has %q", n)
	}

	// A second run compares with the first as its baseline. Two runs of
	// the same release on a busy test machine differ by more than the
	// default x2 at times: the comparison's arithmetic is CompareBaseline's
	// unit test; here, that the suite runs it against the first run.
	venv.Baseline = checks.BaselineFrom(s.Results)
	cfg.Rollback.PerformanceDegradationThreshold = 100
	s2, err := checks.Verify(t.Context(), venv, checks.Options{})
	require.NoError(t, err)
	for _, res := range s2.Results {
		if res.Name == "baseline" {
			assert.Equal(t, checks.Pass, res.Status, res.Message)
			assert.Contains(t, res.Message, "within x100.00 of the baseline")
		}
	}

	// Broken things fail their checks, each with its reason, within bounds.
	env["SAMPLE_LOGIN_PASSWORD"] = "not-the-login-password"
	cfg.Redis.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", closed)
	start = time.Now()
	s3, err := checks.Verify(t.Context(), checks.Env{Config: cfg, Resolver: resolver, BaseURL: venv.BaseURL, Dial: host.DialTCP, Stat: host.StatGlob,
		Categories: []checks.Category{checks.Health, checks.Functional}}, checks.Options{})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 30*time.Second)
	failed := map[string]string{}
	for _, res := range s3.Results {
		if res.Status == checks.Fail {
			failed[res.Name] = res.Message
		}
	}
	assert.Contains(t, failed["redis"], `connect failed ("Connection refused")`)
	assert.Contains(t, failed["authentication /api/v1/auth/login"], "POST /api/v1/auth/login as demo@sample.test: status 401")
	assert.NotContains(t, strings.Join(mapValues(failed), " "), "not-the-login-password")
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
