package checks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lawsker/lawsker-deploy/testenv"
)

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func staticNginx(b *testing.B) string {
	n := testenv.StartNginx(b, "")
	if err := os.WriteFile(filepath.Join(n.Dir, "www", "index.html"), []byte("<!doctype html><title>static</title>"), 0o644); err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/index.html", n.Port)
}

// BenchmarkLoadVsWrk: our load generator and wrk, side by side on nginx
// serving a static file on loopback, same connections and duration;
// reports both rates and ours over wrk's.
func BenchmarkLoadVsWrk(b *testing.B) {
	url := staticNginx(b)
	const conns, secs = 32, 5
	for b.Loop() {
		out := testenv.MustRun(b, testenv.Bin(b, "wrk"), "-t", "2", "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", secs), url)
		m := wrkRate.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no Requests/sec in wrk's output:\n%s", out)
		}
		wrk, _ := strconv.ParseFloat(m[1], 64)
		l := Load(context.Background(), url, LoadOptions{Concurrency: conns, Duration: secs * time.Second})
		if l.Errors > 0 {
			b.Fatalf("our load saw %d errors: %s", l.Errors, l.FirstError)
		}
		b.ReportMetric(wrk, "wrk_req/s")
		b.ReportMetric(l.PerSecond, "ours_req/s")
		b.ReportMetric(l.PerSecond/wrk, "x_wrk")
	}
}

// BenchmarkLoadMemory: 1,000,000 requests through the load generator while
// the heap in use is sampled every 50 ms; reports the peak. Latencies go to
// fixed-size histograms, so the peak does not grow with the count.
func BenchmarkLoadMemory(b *testing.B) {
	url := staticNginx(b)
	const conns = 32
	for b.Loop() {
		var l *LoadResult
		peak := testenv.PeakHeap(func() {
			l = Load(context.Background(), url, LoadOptions{Concurrency: conns, Requests: 1_000_000})
		})
		if l.Requests != 1_000_000 || l.Errors > 0 {
			b.Fatalf("%d requests, %d errors (%s)", l.Requests, l.Errors, l.FirstError)
		}
		b.ReportMetric(float64(peak)/(1<<20), "MB_peak_heap")
		b.ReportMetric(l.PerSecond, "req/s")
	}
}
