package pipelines

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// layered builds `layers` layers of `width` steps; every step needs every
// step of the layer before it.
func layered(b *testing.B, layers, width int, run func(context.Context) error) *Graph {
	var steps []Step
	for l := range layers {
		for w := range width {
			s := Step{Name: fmt.Sprintf("l%d-s%d", l, w), Run: run}
			if l > 0 {
				for p := range width {
					s.Needs = append(s.Needs, fmt.Sprintf("l%d-s%d", l-1, p))
				}
			}
			steps = append(steps, s)
		}
	}
	g, err := New(steps...)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// BenchmarkCriticalPath: 200 steps of 10 ms sleeps in 20 layers, workers
// enough for a layer. Reports the run time over the nominal critical path
// (20 x 10 ms) and over two references measured in this process: the same 20
// sleeps in a row in one goroutine (what sleeping costs here), and the same
// layers run by hand-written WaitGroup barriers with no orchestration (what
// waiting for the slowest of 10 parallel sleeps per layer costs here).
func BenchmarkCriticalPath(b *testing.B) {
	const layers, width, sleep = 20, 10, 10 * time.Millisecond
	nap := func(context.Context) error { time.Sleep(sleep); return nil }
	g := layered(b, layers, width, nap)
	var reference, barrier, ours time.Duration
	for b.Loop() {
		start := time.Now()
		for range layers {
			time.Sleep(sleep)
		}
		reference += time.Since(start)
		start = time.Now()
		for range layers {
			var wg sync.WaitGroup
			for range width {
				wg.Go(func() { time.Sleep(sleep) })
			}
			wg.Wait()
		}
		barrier += time.Since(start)
		res := Run(context.Background(), g, Options{MaxWorkers: width})
		if res.Err() != nil {
			b.Fatal(res.Err())
		}
		ours += res.Duration()
	}
	b.ReportMetric(float64(ours)/float64(time.Duration(b.N)*layers*sleep), "x_nominal_path")
	b.ReportMetric(float64(ours)/float64(reference), "x_sleep_chain")
	b.ReportMetric(float64(ours)/float64(barrier), "x_waitgroup_layers")
}

// BenchmarkSchedulingOverhead: the runner's own cost per step, with steps
// that do nothing (2,000 steps: 100 layers of 20, all-to-all between layers).
func BenchmarkSchedulingOverhead(b *testing.B) {
	const layers, width = 100, 20
	g := layered(b, layers, width, ok)
	var total time.Duration
	for b.Loop() {
		res := Run(context.Background(), g, Options{MaxWorkers: width})
		if res.Err() != nil {
			b.Fatal(res.Err())
		}
		total += res.Duration()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N*layers*width), "us/step")
}

// BenchmarkCriticalPathLatency isolates what the orchestrator adds to a
// critical path, free of sleep jitter: 20 layers of 10 no-op steps, the time
// per layer (from the last step of one layer finishing to the next layer
// done), next to hand-written WaitGroup barriers over the same layers.
func BenchmarkCriticalPathLatency(b *testing.B) {
	const layers, width = 20, 10
	g := layered(b, layers, width, ok)
	var ours, barrier time.Duration
	for b.Loop() {
		start := time.Now()
		if res := Run(context.Background(), g, Options{MaxWorkers: width}); res.Err() != nil {
			b.Fatal(res.Err())
		}
		ours += time.Since(start)
		start = time.Now()
		for range layers {
			var wg sync.WaitGroup
			for range width {
				wg.Go(func() { _ = ok(context.Background()) })
			}
			wg.Wait()
		}
		barrier += time.Since(start)
	}
	b.ReportMetric(float64(ours.Microseconds())/float64(b.N*layers), "us/layer")
	b.ReportMetric(float64(barrier.Microseconds())/float64(b.N*layers), "us/layer_waitgroup")
}
