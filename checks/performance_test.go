package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestResponseTime(t *testing.T) {
	srv := testBackend(t)
	h := NewHTTP(2*time.Second, nil)
	r := run1(t, Check{Name: "rt", Category: Performance, Run: ResponseTime(h, srv.URL+"/api/v1/health", 50, time.Second)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Contains(t, r.Message, "x50: p50 ")
	assert.Contains(t, r.Details, "p95_ms")
	r = run1(t, Check{Name: "rt", Category: Performance, Run: ResponseTime(h, srv.URL+"/api/v1/health", 20, time.Nanosecond)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "is over the 1ns limit")
	r = run1(t, Check{Name: "rt", Category: Performance, Run: ResponseTime(h, srv.URL+"/failing", 5, time.Second)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "request 1 of 5: status 500")
}

func TestLoadTestThroughNginx(t *testing.T) {
	n := testenv.StartNginx(t, "")
	require.NoError(t, os.WriteFile(filepath.Join(n.Dir, "www", "index.html"), []byte("hello"), 0o644))
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", n.Port)
	r := run1(t, Check{Name: "load", Category: Performance, Timeout: 10 * time.Second,
		Run: LoadTest(url, LoadOptions{Concurrency: 8, Duration: time.Second}, time.Second, 0.01)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Greater(t, r.Details["requests_per_second"].(float64), 100.0)
	assert.Zero(t, r.Details["error_rate"])

	srv := testBackend(t)
	r = run1(t, Check{Name: "load", Category: Performance, Timeout: 10 * time.Second,
		Run: LoadTest(srv.URL+"/failing", LoadOptions{Concurrency: 4, Duration: 500 * time.Millisecond}, time.Second, 0.1)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "error rate 100.00% over 10.00% (first: status Internal Server Error)")
}

func TestLoadRequestBound(t *testing.T) {
	srv := testBackend(t)
	l := Load(t.Context(), srv.URL+"/api/v1/health", LoadOptions{Concurrency: 4, Requests: 1000})
	assert.Equal(t, uint64(1000), l.Requests)
	assert.Zero(t, l.Errors)
}

func TestDBLatency(t *testing.T) {
	pg := testenv.StartPostgres(t)
	cfg, err := pgx.ParseConfig(pg.DSN("postgres"))
	require.NoError(t, err)
	r := run1(t, Check{Name: "db", Category: Performance, Run: DBLatency(cfg, 100, 100*time.Millisecond)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Contains(t, r.Message, "SELECT 1 x100: p50 ")
}

func TestCompareBaseline(t *testing.T) {
	previous := []Result{
		{Name: "rt /api", Category: Performance, Status: Pass, Details: map[string]any{"p95_ms": 20.0, "p50_ms": 10.0}},
		{Name: "rt /slow", Category: Performance, Status: Fail, Details: map[string]any{"p95_ms": 1.0}},
	}
	base := BaselineFrom(previous)
	assert.Equal(t, Baseline{"rt /api": {"p95_ms": 20, "p50_ms": 10}}, base, "failed checks are no baseline")
	assert.Equal(t, Baseline{}, BaselineFrom([]Result{{Name: "x", Category: Performance, Status: Pass, Details: map[string]any{"p99_ms": 3.0}}}), "p99 is not compared")
	now := []Result{{Name: "rt /api", Category: Performance, Status: Pass, Details: map[string]any{"p95_ms": 50.0, "p50_ms": 12.0}}}
	r, err := CompareBaseline(now, base, 2.0)
	require.NoError(t, err)
	assert.Equal(t, Fail, r.Status)
	assert.Equal(t, "slower than the baseline by more than x2.00: rt /api p95_ms 20.0 -> 50.0 (x2.50)", r.Message)
	now[0].Details["p95_ms"] = 30.0
	r, _ = CompareBaseline(now, base, 2.0)
	assert.Equal(t, Pass, r.Status)
	r, _ = CompareBaseline(now, nil, 2.0)
	assert.Equal(t, Skip, r.Status)
	tiny := []Result{{Name: "rt /api", Category: Performance, Status: Pass, Details: map[string]any{"p95_ms": 17.0}}}
	r, _ = CompareBaseline(tiny, Baseline{"rt /api": {"p95_ms": 6.0}}, 2.0)
	assert.Equal(t, Pass, r.Status, "latencies under the 20 ms noise floor are compared as 20 ms")
}
