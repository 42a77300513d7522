package checks

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Category groups checks.
type Category string

// Categories, in report order.
const (
	Health      Category = "health"
	Functional  Category = "functional"
	Performance Category = "performance"
	Security    Category = "security"
)

// Categories lists every category in order.
var Categories = []Category{Health, Functional, Performance, Security}

// Valid reports whether c is one of Categories.
func (c Category) Valid() bool { return slices.Contains(Categories, c) }

// Status is a check's verdict.
type Status string

// Statuses. A suite fails when a check fails; warnings are reported only.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Warn Status = "warn"
	Skip Status = "skip"
)

// Result is one check's outcome.
type Result struct {
	Name     string         `json:"name"`
	Category Category       `json:"category"`
	Status   Status         `json:"status"`
	Duration time.Duration  `json:"-"`
	Millis   int64          `json:"duration_ms"`
	Message  string         `json:"message"`
	Details  map[string]any `json:"details,omitempty"`
}

// Check is one verification.
type Check struct {
	Name     string
	Category Category
	// Timeout bounds the check (default 10 s).
	Timeout time.Duration
	// Later runs it after the others (it needs one of their outcomes).
	Later bool
	// Run returns the verdict. An error is a failure with its message; a
	// check that cannot apply returns Skipped("why").
	Run func(ctx context.Context) (Result, error)
}

// Passed, Failed, Warned and Skipped build results.
func Passed(format string, args ...any) Result {
	return Result{Status: Pass, Message: fmt.Sprintf(format, args...)}
}

// Failed is a failing result with a message.
func Failed(format string, args ...any) Result {
	return Result{Status: Fail, Message: fmt.Sprintf(format, args...)}
}

// Warned is a warning result with a message.
func Warned(format string, args ...any) Result {
	return Result{Status: Warn, Message: fmt.Sprintf(format, args...)}
}

// Skipped is a skipped result with the reason.
func Skipped(format string, args ...any) Result {
	return Result{Status: Skip, Message: fmt.Sprintf(format, args...)}
}

// With adds details to a result.
func (r Result) With(kv ...any) Result {
	if r.Details == nil {
		r.Details = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Details[fmt.Sprint(kv[i])] = kv[i+1]
	}
	return r
}

// Suite is the outcome of a run.
type Suite struct {
	Results  []Result      `json:"results"`
	Duration time.Duration `json:"-"`
	Millis   int64         `json:"duration_ms"`
}

// Failed reports whether any check failed.
func (s *Suite) Failed() bool { return s.Count(Fail) > 0 }

// Count returns how many results have the status.
func (s *Suite) Count(st Status) int {
	n := 0
	for _, r := range s.Results {
		if r.Status == st {
			n++
		}
	}
	return n
}

// Options bound a run.
type Options struct {
	Parallel int           // checks at once (default 8)
	Deadline time.Duration // the whole suite (default 2 min)
}

// Run runs the checks in parallel, each bounded by its timeout and all by
// the deadline. A check still running at its timeout is failed (its
// goroutine is abandoned, its context cancelled); a panic is a failure.
// Results come back in category order, then the order given.
func Run(ctx context.Context, checks []Check, opts Options) *Suite {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.Deadline <= 0 {
		opts.Deadline = 2 * time.Minute
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.Deadline)
	defer cancel()
	results := make([]Result, len(checks))
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				results[i] = Result{Name: c.Name, Category: c.Category, Status: Fail, Message: "not started: the suite's deadline of " + opts.Deadline.String() + " passed"}
				return
			}
			results[i] = runOne(ctx, c)
		}()
	}
	wg.Wait()
	order := map[Category]int{}
	for i, c := range Categories {
		order[c] = i
	}
	sort.SliceStable(results, func(a, b int) bool { return order[results[a].Category] < order[results[b].Category] })
	s := &Suite{Results: results, Duration: time.Since(start)}
	s.Millis = s.Duration.Milliseconds()
	return s
}

func runOne(ctx context.Context, c Check) Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	ch := make(chan Result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- Failed("panic: %v", p)
			}
		}()
		r, err := c.Run(cctx)
		if err != nil {
			r = Failed("%s", err.Error()).With(detailsOf(r)...)
		}
		ch <- r
	}()
	var r Result
	select {
	case r = <-ch:
	case <-cctx.Done():
		// Give the check a moment to report its own (better) error.
		select {
		case r = <-ch:
		case <-time.After(500 * time.Millisecond):
			r = Failed("no answer within %s", timeout)
		}
	}
	r.Name, r.Category = c.Name, c.Category
	r.Duration = time.Since(start)
	r.Millis = r.Duration.Milliseconds()
	if r.Status == "" {
		r.Status = Pass
	}
	return r
}

func detailsOf(r Result) []any {
	var kv []any
	for k, v := range r.Details {
		kv = append(kv, k, v)
	}
	return kv
}
