package logstore

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lawsker/lawsker-deploy/testenv"
)

// BenchmarkSince10mOnAMillionLines is the figure of `logs --since 10m`:
// 1,000,000 lines of three releases in the store (the last 20 minutes),
// then the newest 200 lines of one release in the last 10 minutes, oldest
// first, and the same with a phrase. The reference is the store's own
// answer to the plain query without sorting (the least it can do).
func BenchmarkSince10mOnAMillionLines(b *testing.B) {
	v := testenv.StartVictoriaLogs(b)
	c := New(v.URL, nil)
	ctx := context.Background()
	const total, batch = 1_000_000, 25_000
	start := time.Now().Add(-20 * time.Minute)
	step := 20 * time.Minute / total
	ingest := time.Now()
	for i := 0; i < total; i += batch {
		entries := make([]Entry, 0, batch)
		for j := i; j < i+batch; j++ {
			rel := []string{"r1", "r2", "r3"}[j%3]
			entries = append(entries, Entry{Time: start.Add(time.Duration(j) * step), Message: fmt.Sprintf("GET /api/v1/cases/%d 200 %d ms request=%08x", j%5000, j%97, j),
				Fields: map[string]string{"app": "sample", "release": rel, "source": "backend"}})
		}
		if err := c.Ingest(ctx, entries); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("ingested %d lines in %s", total, time.Since(ingest).Round(time.Millisecond))
	// Wait until every line is searchable.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := 0
		_ = c.stream(ctx, "/select/logsql/query", url.Values{"query": {"* | stats count() as n"}}, func(e Entry) error { _, _ = fmt.Sscan(e.Fields["n"], &n); return nil })
		if n >= total || time.Now().After(deadline) {
			b.Logf("%d lines searchable", n)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	q := Query{Since: 10 * time.Minute, Fields: map[string]string{"release": "r2"}, Limit: 200}
	reference := func() time.Duration {
		t0 := time.Now()
		resp, err := http.PostForm(v.URL+"/select/logsql/query", url.Values{"query": {`_time:10m release:="r2" | limit 200`}})
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0)
	}
	ours := func(q Query) (time.Duration, int) {
		t0 := time.Now()
		n := 0
		if err := c.Query(ctx, q, func(Entry) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), n
	}
	b.ResetTimer()
	for range b.N {
		ref := reference()
		d, n := ours(q)
		q2 := q
		q2.Grep = "cases/42 "
		d2, n2 := ours(q2)
		b.ReportMetric(d.Seconds(), "since10m_s")
		b.ReportMetric(d2.Seconds(), "since10m_grep_s")
		b.ReportMetric(float64(d)/float64(ref), "x_unsorted_reference")
		b.Logf("logs --since 10m --release r2 (newest 200 of %d lines): %s for %d lines; with --grep: %s for %d lines; the store's unsorted answer: %s",
			total, d.Round(time.Millisecond), n, d2.Round(time.Millisecond), n2, ref.Round(time.Millisecond))
		if !strings.HasPrefix(q.LogsQL(), "_time:10m") {
			b.Fatal("the query lost its window")
		}
	}
}
