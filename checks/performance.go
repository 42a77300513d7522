package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ResponseTime sends n requests one after another and judges the 95th
// percentile against the threshold; any failed request fails the check.
func ResponseTime(h *HTTP, url string, n int, threshold time.Duration) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		var hist Histogram
		for i := 0; i < n; i++ {
			t0 := time.Now()
			resp, err := h.Get(ctx, url)
			if err != nil {
				return Result{}, fmt.Errorf("request %d of %d: %w", i+1, n, err)
			}
			if resp.Status >= 500 {
				return Failed("GET %s: request %d of %d: status %d", url, i+1, n, resp.Status), nil
			}
			hist.Record(time.Since(t0))
		}
		p50, p95, p99 := hist.Percentile(50), hist.Percentile(95), hist.Percentile(99)
		r := Passed("GET %s x%d: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms (limit p95 %s)", url, n, ms(p50), ms(p95), ms(p99), threshold)
		if p95 > threshold {
			r.Status = Fail
			r.Message = fmt.Sprintf("GET %s x%d: p95 %.1f ms is over the %s limit (p50 %.1f ms, p99 %.1f ms)", url, n, ms(p95), threshold, ms(p50), ms(p99))
		}
		return r.With("p50_ms", ms(p50), "p95_ms", ms(p95), "p99_ms", ms(p99)), nil
	}
}

// LoadTest runs Load and judges error rate and p95.
func LoadTest(url string, o LoadOptions, p95Limit time.Duration, maxErrorRate float64) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		l := Load(ctx, url, o)
		if l.Requests == 0 {
			return Failed("GET %s: no request completed in %s (%s)", url, o.Duration, l.FirstError), nil
		}
		msg := fmt.Sprintf("%d workers for %s: %d requests (%.0f/s), error rate %.2f%%, p50 %.1f ms, p95 %.1f ms, p99 %.1f ms",
			o.Concurrency, l.Duration.Round(time.Millisecond), l.Requests, l.PerSecond, 100*l.ErrorRate, ms(l.P50), ms(l.P95), ms(l.P99))
		r := Passed("%s", msg)
		var why []string
		if l.ErrorRate > maxErrorRate {
			why = append(why, fmt.Sprintf("error rate %.2f%% over %.2f%% (first: %s)", 100*l.ErrorRate, 100*maxErrorRate, l.FirstError))
		}
		if l.P95 > p95Limit {
			why = append(why, fmt.Sprintf("p95 %.1f ms over %s", ms(l.P95), p95Limit))
		}
		if len(why) > 0 {
			r = Failed("%s: %s", msg, strings.Join(why, "; "))
		}
		return r.With("requests_per_second", l.PerSecond, "error_rate", l.ErrorRate, "p50_ms", ms(l.P50), "p95_ms", ms(l.P95), "p99_ms", ms(l.P99)), nil
	}
}

// DBLatency times n `SELECT 1` round trips and judges p95.
func DBLatency(cfg *pgx.ConnConfig, n int, limit time.Duration) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return Result{}, fmt.Errorf("connecting to %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var hist Histogram
		for range n {
			t0 := time.Now()
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				return Result{}, fmt.Errorf("SELECT 1: %w", err)
			}
			hist.Record(time.Since(t0))
		}
		p95 := hist.Percentile(95)
		r := Passed("SELECT 1 x%d: p50 %.2f ms, p95 %.2f ms (limit %s)", n, ms(hist.Percentile(50)), ms(p95), limit)
		if p95 > limit {
			r = Failed("SELECT 1 x%d: p95 %.2f ms is over the %s limit", n, ms(p95), limit)
		}
		return r.With("p95_ms", ms(p95)), nil
	}
}

// Baseline holds a previous run's figures: check name -> metric -> value.
type Baseline map[string]map[string]float64

// baselineMetrics are compared with a baseline: p50 and p95 (a p99 of 20
// samples is the maximum, which is noise).
var baselineMetrics = map[string]bool{"p50_ms": true, "p95_ms": true}

// noiseFloorMS: latencies under it are compared as it (scheduler noise on a
// busy host moves small latencies by several times).
const noiseFloorMS = 20

// BaselineFrom reads the figures of a previous suite's results (those of
// passing checks only: a failed run is no baseline).
func BaselineFrom(results []Result) Baseline {
	b := Baseline{}
	for _, r := range results {
		if r.Status != Pass || r.Category != Performance {
			continue
		}
		for k, v := range r.Details {
			if f, ok := v.(float64); ok && baselineMetrics[k] {
				if b[r.Name] == nil {
					b[r.Name] = map[string]float64{}
				}
				b[r.Name][k] = f
			}
		}
	}
	return b
}

// CompareBaseline checks each latency of the current results against the
// baseline: a ratio above maxRatio fails (values under noiseFloorMS are
// compared as noiseFloorMS).
func CompareBaseline(current []Result, base Baseline, maxRatio float64) (Result, error) {
	if len(base) == 0 {
		return Skipped("no baseline: no earlier passing verify report to compare with"), nil
	}
	type row struct {
		name  string
		ratio float64
		text  string
	}
	var rows []row
	for _, r := range current {
		prev, ok := base[r.Name]
		if !ok {
			continue
		}
		for k, now := range r.Details {
			f, ok := now.(float64)
			was, had := prev[k]
			if !ok || !had {
				continue
			}
			ratio := max(f, noiseFloorMS) / max(was, noiseFloorMS)
			rows = append(rows, row{r.Name + " " + k, ratio, fmt.Sprintf("%s %s %.1f -> %.1f (x%.2f)", r.Name, k, was, f, ratio)})
		}
	}
	if len(rows) == 0 {
		return Skipped("the baseline has none of this run's checks"), nil
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ratio > rows[j].ratio })
	details := map[string]any{}
	var worse []string
	for _, r := range rows {
		details[r.name] = r.ratio
		if r.ratio > maxRatio {
			worse = append(worse, r.text)
		}
	}
	if len(worse) > 0 {
		return Failed("slower than the baseline by more than x%.2f: %s", maxRatio, strings.Join(worse, "; ")).With("ratios", details), nil
	}
	return Passed("within x%.2f of the baseline (worst: %s)", maxRatio, rows[0].text).With("ratios", details), nil
}
