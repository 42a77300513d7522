package pipelines

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Options say how a graph runs.
type Options struct {
	// MaxWorkers is the most steps running at once (at least 1).
	MaxWorkers int
	// Serial runs one step at a time in stage order (parallel execution
	// off), whatever MaxWorkers says.
	Serial bool
	// ContinueOnFailure keeps starting steps that do not depend on a failed
	// one. By default a failure stops new work (Always steps still run).
	ContinueOnFailure bool
	// DefaultTimeout bounds attempts of steps that set no Timeout (0: none).
	DefaultTimeout time.Duration
	// Drain is how long running steps may go on after the run's context is
	// cancelled before their own contexts are cancelled (0: at once).
	Drain time.Duration
	// AbortWait is how long a step whose context was cancelled (timeout or
	// abort) has to return before it is abandoned and recorded as such
	// (default 5s). This bounds every wait, even on a step that ignores ctx.
	AbortWait time.Duration
	// Abort, when closed, ends the drain at once (a second Ctrl-C).
	Abort <-chan struct{}
	// Observer sees every event; nil for none.
	Observer Observer
	// Logger receives one structured record per event; nil for none.
	Logger *slog.Logger
}

// ErrPlanOnly is the error of a step with no Run function.
var ErrPlanOnly = errors.New("step has no Run function (the graph is a plan only)")

// Run executes the graph and returns how every step ended. It returns when
// every step is final: ready steps start as soon as their needs are met,
// most downstream work first, up to MaxWorkers at once.
func Run(ctx context.Context, g *Graph, opts Options) *Result {
	if opts.MaxWorkers < 1 || opts.Serial {
		opts.MaxWorkers = 1
	}
	if opts.AbortWait <= 0 {
		opts.AbortWait = 5 * time.Second
	}
	r := &runner{g: g, opts: opts, done: make(chan outcome, g.Len())}
	return r.run(ctx)
}

type outcome struct {
	i        int
	state    State
	attempts int
	start    time.Time
	err      error
	reason   string
}

type runner struct {
	g    *Graph
	opts Options
	done chan outcome

	obsMu sync.Mutex
	start time.Time

	results   []StepResult
	waiting   []int // needs not yet final
	blockedBy []int // first need that failed or was cancelled, -1 when none
	cancels   []context.CancelFunc
	ready     readyQueue
	running   int
	finished  int
	stopWhy   string // set once new work stops (failure or cancellation)
	cancelled bool
}

func (r *runner) emit(e Event) {
	if r.opts.Observer == nil && r.opts.Logger == nil {
		return
	}
	e.Time = time.Now()
	r.obsMu.Lock()
	defer r.obsMu.Unlock()
	if r.opts.Observer != nil {
		r.opts.Observer.Observe(e)
	}
	if l := r.opts.Logger; l != nil {
		attrs := []slog.Attr{slog.String("step", e.Step)}
		if e.Attempt > 0 {
			attrs = append(attrs, slog.Int("attempt", e.Attempt))
		}
		level, msg := slog.LevelInfo, ""
		switch e.Kind {
		case RunStarted:
			msg, attrs = "run started", []slog.Attr{slog.Int("steps", r.g.Len()), slog.Int("max_workers", r.opts.MaxWorkers)}
		case StepStarted:
			msg = "step started"
		case StepRetrying:
			level, msg = slog.LevelWarn, "step will retry"
			attrs = append(attrs, slog.Duration("delay", e.Delay), slog.String("error", e.Err.Error()))
		case StepFinished:
			msg = "step " + e.State.String()
			attrs = append(attrs, slog.Duration("duration", e.Elapsed))
			if e.Err != nil {
				level = slog.LevelError
				attrs = append(attrs, slog.String("error", e.Err.Error()))
			}
			if e.Reason != "" {
				attrs = append(attrs, slog.String("reason", e.Reason))
			}
		case RunFinished:
			msg = "run " + e.State.String()
			attrs = []slog.Attr{slog.Duration("duration", e.Elapsed)}
		}
		l.LogAttrs(context.Background(), level, msg, attrs...)
	}
}

func (r *runner) run(ctx context.Context) *Result {
	n := r.g.Len()
	r.start = time.Now()
	r.results = make([]StepResult, n)
	r.waiting = make([]int, n)
	r.blockedBy = make([]int, n)
	r.cancels = make([]context.CancelFunc, n)
	r.ready = readyQueue{g: r.g, serial: r.opts.Serial}
	for i, s := range r.g.steps {
		r.results[i] = StepResult{Name: s.Name, State: Pending}
		r.waiting[i] = len(r.g.needs[i])
		r.blockedBy[i] = -1
		if r.waiting[i] == 0 {
			heap.Push(&r.ready, i)
		}
	}
	r.emit(Event{Kind: RunStarted})

	// Steps' contexts keep the run context's values but not its
	// cancellation: the runner decides when they are cancelled (drain).
	base := context.WithoutCancel(ctx)
	var drain <-chan time.Time
	ctxDone := ctx.Done()
	abort := r.opts.Abort

	r.dispatch(base)
	for r.finished < n {
		select {
		case o := <-r.done:
			r.running--
			r.cancels[o.i]()
			r.finish(o)
		case <-ctxDone:
			ctxDone = nil
			r.cancelled = true
			r.stop("run cancelled")
			if r.opts.Drain > 0 && r.running > 0 {
				drain = time.After(r.opts.Drain)
				if r.opts.Logger != nil {
					r.opts.Logger.Warn("run cancelled: running steps may finish", "drain", r.opts.Drain, "running", r.running)
				}
			} else {
				r.abortRunning()
			}
		case <-drain:
			drain = nil
			r.abortRunning()
		case <-abort:
			abort = nil
			if r.cancelled {
				r.abortRunning()
			}
		}
		r.dispatch(base)
	}
	res := &Result{Start: r.start, End: time.Now(), Steps: r.results, State: Succeeded}
	for _, s := range r.results {
		if s.State == Failed && res.State != Cancelled {
			res.State = Failed
		}
	}
	if r.cancelled {
		res.State = Cancelled
	}
	r.emit(Event{Kind: RunFinished, State: res.State, Elapsed: res.Duration()})
	return res
}

// stop marks that no new (non-Always) work starts; dispatch then finalises
// ready steps as skipped or cancelled with the reason.
func (r *runner) stop(why string) {
	if r.stopWhy == "" {
		r.stopWhy = why
	}
}

// abortRunning cancels every running non-Always step's context; each
// returns within AbortWait or is abandoned by its own goroutine.
func (r *runner) abortRunning() {
	for i, res := range r.results {
		if res.State == Running && !r.g.steps[i].Always {
			r.cancels[i]()
		}
	}
}

// dispatch starts ready steps up to the worker limit, and finalises ready
// steps that must not run.
func (r *runner) dispatch(base context.Context) {
	for r.ready.Len() > 0 {
		i := r.ready.peek()
		step := r.g.steps[i]
		if b := r.blockedBy[i]; b >= 0 && !step.Always {
			heap.Pop(&r.ready)
			dep := r.results[b]
			state, reason := Skipped, fmt.Sprintf("needs %s, which %s", dep.Name, dep.State)
			if dep.State == Cancelled || r.cancelled {
				state = Cancelled
			}
			r.finish(outcome{i: i, state: state, reason: reason})
			continue
		}
		if r.stopWhy != "" && !step.Always {
			heap.Pop(&r.ready)
			state := Skipped
			if r.cancelled {
				state = Cancelled
			}
			r.finish(outcome{i: i, state: state, reason: "not started: " + r.stopWhy})
			continue
		}
		if r.running >= r.opts.MaxWorkers {
			return
		}
		heap.Pop(&r.ready)
		stepCtx, cancel := context.WithCancel(base)
		r.cancels[i] = cancel
		r.running++
		r.results[i].State = Running
		go r.execute(stepCtx, i)
	}
}

// finish records a final outcome and releases the steps that need it.
func (r *runner) finish(o outcome) {
	res := &r.results[o.i]
	res.State, res.Attempts, res.Err, res.Reason = o.state, o.attempts, o.err, o.reason
	res.Start, res.End = o.start, time.Now()
	r.finished++
	r.emit(Event{Kind: StepFinished, Step: res.Name, State: o.state, Attempt: o.attempts, Err: o.err, Reason: o.reason, Elapsed: res.Duration()})
	if o.state == Failed && !r.opts.ContinueOnFailure {
		r.stop(fmt.Sprintf("step %s failed", res.Name))
	}
	for _, j := range r.g.dependents[o.i] {
		if (o.state == Failed || o.state == Cancelled || (o.state == Skipped && r.blockedBy[o.i] >= 0)) && r.blockedBy[j] < 0 {
			r.blockedBy[j] = o.i
		}
		if r.waiting[j]--; r.waiting[j] == 0 {
			heap.Push(&r.ready, j)
		}
	}
}

// execute runs one step's attempts with its timeout and retry policy, in
// the step's own goroutine, and delivers exactly one outcome to r.done
// (itself, or the watcher of an attempt it abandoned).
func (r *runner) execute(ctx context.Context, i int) {
	step := r.g.steps[i]
	o := outcome{i: i, start: time.Now()}
	timeout := step.Timeout
	if timeout == 0 {
		timeout = r.opts.DefaultTimeout
	}
	for {
		o.attempts++
		r.emit(Event{Kind: StepStarted, Step: step.Name, State: Running, Attempt: o.attempts, Elapsed: time.Since(o.start)})
		err, timedOut, abandoned := r.attempt(ctx, step, timeout, o)
		if abandoned {
			return
		}
		switch {
		case err == nil:
			o.state = Succeeded
		case ctx.Err() != nil:
			o.state, o.err, o.reason = Cancelled, err, "aborted while running"
		}
		if o.state != Pending {
			r.done <- o
			return
		}
		if reason, ok := IsSkip(err); ok {
			o.state, o.reason = Skipped, reason
			r.done <- o
			return
		}
		retry := IsRetriable(err) || (timedOut && step.Retry.RetryTimeouts)
		if !retry || o.attempts >= max(step.Retry.Attempts, 1) {
			o.state, o.err = Failed, err
			if retry {
				o.err = fmt.Errorf("after %d attempts: %w", o.attempts, err)
			}
			r.done <- o
			return
		}
		delay := step.Retry.Backoff(o.attempts)
		r.emit(Event{Kind: StepRetrying, Step: step.Name, State: Running, Attempt: o.attempts, Delay: delay, Err: err, Elapsed: time.Since(o.start)})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			o.state, o.err, o.reason = Cancelled, err, "aborted while waiting to retry"
			r.done <- o
			return
		}
	}
}

// Who decides how an attempt ends: the step returning, or the watcher
// abandoning it.
const (
	open int32 = iota
	returned
	abandonedByWatcher
)

// attempt runs step.Run once, in the calling goroutine (no hand-off on the
// critical path). A panic becomes an error. The wait is bounded: once the
// attempt's context ends (timeout or abort) the step has AbortWait to return,
// after which a timer delivers the outcome itself and the step's eventual
// return is ignored (abandoned is then true).
func (r *runner) attempt(ctx context.Context, step Step, timeout time.Duration, o outcome) (err error, timedOut, abandoned bool) {
	if step.Run == nil {
		return ErrPlanOnly, false, false
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	var claim atomic.Int32
	abandon := func() {
		if !claim.CompareAndSwap(open, abandonedByWatcher) {
			return // the step returned in time
		}
		o.err = fmt.Errorf("did not return within %s of being stopped; abandoned", r.opts.AbortWait)
		if ctx.Err() != nil {
			o.state, o.reason = Cancelled, "aborted while running"
		} else {
			o.state, o.err = Failed, fmt.Errorf("timed out after %s: %w", timeout, o.err)
		}
		r.done <- o
	}
	// Nothing runs unless the attempt's context ends: no goroutine on the
	// normal path.
	stopWatch := context.AfterFunc(actx, func() { time.AfterFunc(r.opts.AbortWait, abandon) })
	err = safeRun(actx, step.Run)
	stopWatch()
	if !claim.CompareAndSwap(open, returned) {
		return nil, false, true
	}
	if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		if err == nil {
			return nil, false, false // finished just in time
		}
		return fmt.Errorf("timed out after %s: %w", timeout, err), true, false
	}
	return err, false, false
}

func safeRun(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return run(ctx)
}

// readyQueue orders ready steps: in parallel mode the longest downstream
// chain first (critical path scheduling), in serial mode stage order; then
// the order steps were given.
type readyQueue struct {
	g      *Graph
	serial bool
	items  []int
}

func (q readyQueue) Len() int { return len(q.items) }
func (q readyQueue) Less(a, b int) bool {
	i, j := q.items[a], q.items[b]
	if q.serial {
		if q.g.stage[i] != q.g.stage[j] {
			return q.g.stage[i] < q.g.stage[j]
		}
	} else if q.g.rank[i] != q.g.rank[j] {
		return q.g.rank[i] > q.g.rank[j]
	}
	return i < j
}
func (q readyQueue) Swap(a, b int) { q.items[a], q.items[b] = q.items[b], q.items[a] }
func (q *readyQueue) Push(x any)   { q.items = append(q.items, x.(int)) }
func (q *readyQueue) Pop() any {
	last := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return last
}
func (q readyQueue) peek() int { return q.items[0] }
