package pipelines

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

func (r *recorder) kinds(step string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Step != step {
			continue
		}
		switch e.Kind {
		case StepStarted:
			out = append(out, fmt.Sprintf("start#%d", e.Attempt))
		case StepRetrying:
			out = append(out, fmt.Sprintf("retry#%d", e.Attempt))
		case StepFinished:
			out = append(out, e.State.String())
		}
	}
	return out
}

func ok(context.Context) error { return nil }

func mustGraph(t *testing.T, steps ...Step) *Graph {
	t.Helper()
	g, err := New(steps...)
	require.NoError(t, err)
	return g
}

func states(res *Result) map[string]string {
	m := map[string]string{}
	for _, s := range res.Steps {
		m[s.Name] = s.State.String()
		if s.Reason != "" {
			m[s.Name] += ": " + s.Reason
		}
	}
	return m
}

func TestRunOrderRespectsNeeds(t *testing.T) {
	var mu sync.Mutex
	var order []string
	rec := func(name string) func(context.Context) error {
		return func(context.Context) error { mu.Lock(); order = append(order, name); mu.Unlock(); return nil }
	}
	g := mustGraph(t,
		Step{Name: "c", Needs: []string{"b"}, Run: rec("c")},
		Step{Name: "b", Needs: []string{"a"}, Run: rec("b")},
		Step{Name: "a", Run: rec("a")},
	)
	res := Run(t.Context(), g, Options{MaxWorkers: 4})
	require.NoError(t, res.Err())
	assert.Equal(t, []string{"a", "b", "c"}, order)
	assert.Equal(t, Succeeded, res.State)
}

func TestParallelismIsBoundedByMaxWorkers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantMax int32
	}{
		{"max 3", Options{MaxWorkers: 3}, 3},
		{"serial", Options{MaxWorkers: 8, Serial: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cur, peak atomic.Int32
			work := func(context.Context) error {
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(20 * time.Millisecond)
				cur.Add(-1)
				return nil
			}
			var steps []Step
			for i := range 8 {
				steps = append(steps, Step{Name: fmt.Sprintf("s%d", i), Run: work})
			}
			res := Run(t.Context(), mustGraph(t, steps...), tc.opts)
			require.NoError(t, res.Err())
			assert.Equal(t, tc.wantMax, peak.Load())
		})
	}
}

func TestFailureStopsNewWorkAndSkipsDependents(t *testing.T) {
	boom := errors.New("boom")
	rec := &recorder{}
	g := mustGraph(t,
		Step{Name: "build", Run: func(context.Context) error { return boom }},
		Step{Name: "slow", Run: func(context.Context) error { time.Sleep(30 * time.Millisecond); return nil }},
		Step{Name: "publish", Needs: []string{"build"}, Run: ok},
		Step{Name: "after-slow", Needs: []string{"slow"}, Run: ok},
		Step{Name: "unlock", Needs: []string{"publish", "after-slow"}, Always: true, Timeout: time.Second, Run: ok},
	)
	res := Run(t.Context(), g, Options{MaxWorkers: 2, Observer: rec})
	assert.Equal(t, Failed, res.State)
	assert.Equal(t, map[string]string{
		"build":      "failed",
		"slow":       "succeeded",
		"publish":    "skipped: needs build, which failed",
		"after-slow": "skipped: not started: step build failed",
		"unlock":     "succeeded",
	}, states(res))
	assert.EqualError(t, res.Err(), "step build: boom")
	assert.ErrorIs(t, res.Err(), boom)
	assert.Equal(t, []string{"start#1", "failed"}, rec.kinds("build"))
	assert.Equal(t, []string{"skipped"}, rec.kinds("publish"))
}

func TestContinueOnFailure(t *testing.T) {
	g := mustGraph(t,
		Step{Name: "a", Run: func(context.Context) error { return errors.New("x") }},
		Step{Name: "b", Run: func(context.Context) error { time.Sleep(10 * time.Millisecond); return nil }},
		Step{Name: "c", Needs: []string{"b"}, Run: ok},
		Step{Name: "d", Needs: []string{"a"}, Run: ok},
	)
	res := Run(t.Context(), g, Options{MaxWorkers: 1, ContinueOnFailure: true})
	assert.Equal(t, map[string]string{"a": "failed", "b": "succeeded", "c": "succeeded", "d": "skipped: needs a, which failed"}, states(res))
}

func TestSkipIsNotAFailure(t *testing.T) {
	g := mustGraph(t,
		Step{Name: "tls", Run: func(context.Context) error { return Skip("tls.enabled is false") }},
		Step{Name: "switch", Needs: []string{"tls"}, Run: ok},
	)
	res := Run(t.Context(), g, Options{MaxWorkers: 2})
	require.NoError(t, res.Err())
	assert.Equal(t, map[string]string{"tls": "skipped: tls.enabled is false", "switch": "succeeded"}, states(res))
}

func TestRetriesOnlyRetriableErrors(t *testing.T) {
	var flaky, fatal, exhausted atomic.Int32
	rec := &recorder{}
	fast := RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}
	g := mustGraph(t,
		Step{Name: "flaky", Retry: fast, Run: func(context.Context) error {
			if flaky.Add(1) < 3 {
				return Retriable(errors.New("connection reset"))
			}
			return nil
		}},
		Step{Name: "fatal", Retry: fast, Run: func(context.Context) error { fatal.Add(1); return errors.New("bad digest") }},
		Step{Name: "exhausted", Retry: fast, Run: func(context.Context) error {
			exhausted.Add(1)
			return Retriable(errors.New("503"))
		}},
	)
	res := Run(t.Context(), g, Options{MaxWorkers: 3, ContinueOnFailure: true, Observer: rec})
	assert.Equal(t, int32(3), flaky.Load())
	assert.Equal(t, int32(1), fatal.Load())
	assert.Equal(t, int32(3), exhausted.Load())
	assert.Equal(t, []string{"start#1", "retry#1", "start#2", "retry#2", "start#3", "succeeded"}, rec.kinds("flaky"))
	s, _ := res.Step("exhausted")
	assert.Equal(t, 3, s.Attempts)
	assert.EqualError(t, s.Err, "after 3 attempts: 503")
	s, _ = res.Step("fatal")
	assert.Equal(t, 1, s.Attempts)
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: -1}
	assert.Equal(t, 100*time.Millisecond, p.Backoff(1))
	assert.Equal(t, 200*time.Millisecond, p.Backoff(2))
	assert.Equal(t, 800*time.Millisecond, p.Backoff(4))
	assert.Equal(t, time.Second, p.Backoff(10))
	j := RetryPolicy{Initial: 100 * time.Millisecond, Jitter: 0.5}
	seen := map[time.Duration]bool{}
	for range 50 {
		d := j.Backoff(1)
		assert.GreaterOrEqual(t, d, 50*time.Millisecond)
		assert.LessOrEqual(t, d, 150*time.Millisecond)
		seen[d] = true
	}
	assert.Greater(t, len(seen), 1, "jitter spreads delays")
}

func TestTimeoutPerAttempt(t *testing.T) {
	var calls atomic.Int32
	g := mustGraph(t,
		Step{Name: "hangs", Timeout: 20 * time.Millisecond, Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		Step{Name: "retried", Timeout: 20 * time.Millisecond, Retry: RetryPolicy{Attempts: 2, Initial: time.Millisecond, RetryTimeouts: true},
			Run: func(ctx context.Context) error {
				if calls.Add(1) == 1 {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			}},
		Step{Name: "ignores-ctx", Timeout: 10 * time.Millisecond, Run: func(context.Context) error { time.Sleep(2 * time.Second); return nil }},
	)
	res := Run(t.Context(), g, Options{MaxWorkers: 3, ContinueOnFailure: true, AbortWait: 30 * time.Millisecond})
	s, _ := res.Step("hangs")
	assert.Equal(t, Failed, s.State)
	assert.EqualError(t, s.Err, "timed out after 20ms: context deadline exceeded")
	s, _ = res.Step("retried")
	assert.Equal(t, Succeeded, s.State)
	assert.Equal(t, 2, s.Attempts)
	s, _ = res.Step("ignores-ctx")
	assert.Equal(t, Failed, s.State)
	assert.EqualError(t, s.Err, "timed out after 10ms: did not return within 30ms of being stopped; abandoned")
	assert.Less(t, res.Duration(), time.Second, "an abandoned step does not hold the run")
}

func TestPanicBecomesFailure(t *testing.T) {
	g := mustGraph(t, Step{Name: "p", Run: func(context.Context) error { panic("nil map") }})
	res := Run(t.Context(), g, Options{})
	s, _ := res.Step("p")
	assert.Equal(t, Failed, s.State)
	assert.ErrorContains(t, s.Err, "panic: nil map")
}

func TestPlanOnlyGraphCannotRun(t *testing.T) {
	res := Run(t.Context(), mustGraph(t, Step{Name: "a"}), Options{})
	assert.ErrorIs(t, res.Err(), ErrPlanOnly)
}

// Cancellation: no new work starts, running steps get the drain, then are
// aborted; Always steps still run; every step's end is recorded.
func TestCancellationDrainsThenAborts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		drain     time.Duration
		stepTakes time.Duration
		want      map[string]string
	}{
		{"running step finishes within the drain", time.Second, 50 * time.Millisecond, map[string]string{
			"migrate": "succeeded", "switch": "cancelled: not started: run cancelled", "other": "cancelled: not started: run cancelled", "unlock": "succeeded"}},
		{"running step is aborted when the drain ends", 20 * time.Millisecond, 5 * time.Second, map[string]string{
			"migrate": "cancelled: aborted while running", "switch": "cancelled: needs migrate, which cancelled", "other": "cancelled: needs migrate, which cancelled", "unlock": "succeeded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			started := make(chan struct{})
			var unlockSawCancelledCtx atomic.Bool
			g := mustGraph(t,
				Step{Name: "migrate", Run: func(ctx context.Context) error {
					close(started)
					select {
					case <-time.After(tc.stepTakes):
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				}},
				Step{Name: "switch", Needs: []string{"migrate"}, Run: ok},
				Step{Name: "other", Needs: []string{"migrate"}, Run: ok},
				Step{Name: "unlock", Needs: []string{"switch", "other"}, Always: true, Timeout: time.Second, Run: func(ctx context.Context) error {
					unlockSawCancelledCtx.Store(ctx.Err() != nil)
					return nil
				}},
			)
			go func() { <-started; cancel() }()
			res := Run(ctx, g, Options{MaxWorkers: 2, Drain: tc.drain})
			assert.Equal(t, Cancelled, res.State)
			assert.Equal(t, tc.want, states(res))
			assert.ErrorIs(t, res.Err(), ErrCancelled)
			assert.False(t, unlockSawCancelledCtx.Load(), "cleanup runs with a live context")
		})
	}
}

func TestAbortChannelEndsDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	abort := make(chan struct{})
	started := make(chan struct{})
	g := mustGraph(t, Step{Name: "long", Run: func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	go func() { <-started; cancel(); time.Sleep(10 * time.Millisecond); close(abort) }()
	begin := time.Now()
	res := Run(ctx, g, Options{Drain: time.Hour, Abort: abort})
	assert.Equal(t, map[string]string{"long": "cancelled: aborted while running"}, states(res))
	assert.Less(t, time.Since(begin), 5*time.Second)
}

func TestObserverSeesRunLifecycle(t *testing.T) {
	rec := &recorder{}
	Run(t.Context(), mustGraph(t, Step{Name: "a", Run: ok}, Step{Name: "b", Needs: []string{"a"}, Run: ok}), Options{Observer: rec})
	require.GreaterOrEqual(t, len(rec.events), 6)
	assert.Equal(t, RunStarted, rec.events[0].Kind)
	last := rec.events[len(rec.events)-1]
	assert.Equal(t, RunFinished, last.Kind)
	assert.Equal(t, Succeeded, last.State)
	assert.Equal(t, []string{"start#1", "succeeded"}, rec.kinds("b"))
}
