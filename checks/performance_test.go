package checks

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// The load generator's response reader: every way an HTTP/1.x body ends,
// and what it must refuse.
func TestReadResponse(t *testing.T) {
	for _, tt := range []struct {
		name, in      string
		status        int
		closeConn     bool
		err, leftover string
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhelloNEXT", 200, false, "", "NEXT"},
		{"chunked with a trailer", "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\nNEXT", 500, false, "", "NEXT"},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nokNEXT", 200, true, "", "NEXT"},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\nNEXT", 200, false, "", "NEXT"},
		{"HTTP/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, true, "", ""},
		{"until the end", "HTTP/1.1 200 OK\r\n\r\nall of it", 200, true, "", ""},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, false, "", "NEXT"},
		{"an interim answer first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nxNEXT", 201, false, "", "NEXT"},
		{"LF only", "HTTP/1.1 200 OK\nContent-Length: 1\n\nxNEXT", 200, false, "", "NEXT"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n", 0, false, `malformed HTTP status line "SSH-2.0-OpenSSH_9.2"`, ""},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, `malformed Content-Length "-1"`, ""},
		{"too large", "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", 0, false, "response body larger than 1 MiB", ""},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 200, false, `malformed chunk size "zz"`, ""},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Len", 0, false, "unexpected EOF", ""},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tt.in), 16<<10)
		status, closeConn, err := readResponse(br)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.status, status, tt.name)
		assert.Equal(t, tt.closeConn, closeConn, tt.name)
		rest, _ := io.ReadAll(br)
		assert.Equal(t, tt.leftover, string(rest), tt.name)
	}
}
