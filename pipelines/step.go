package pipelines

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Step is one node of the DAG.
type Step struct {
	// Name is unique in the graph: lowercase letters, digits and -_.:/
	Name string
	// Description says what the step does, for plans and reports.
	Description string
	// Needs names the steps that must finish (successfully or skipped)
	// before this one starts.
	Needs []string
	// Timeout bounds each attempt; 0 uses Options.DefaultTimeout.
	Timeout time.Duration
	// Retry says how errors marked Retriable are retried.
	Retry RetryPolicy
	// Always makes the step run once its needs have finished, whatever
	// their outcome, even after a failure or cancellation elsewhere: for
	// cleanup such as releasing a lock. It must set a Timeout, and must
	// check for itself what there is to undo (its needs may have failed).
	Always bool
	// Run does the work. It must honour ctx: cancellation and the timeout
	// arrive through it. A nil Run makes the graph a plan only (Run fails).
	Run func(ctx context.Context) error
}

// RetryPolicy is exponential backoff with jitter, for retriable errors only.
type RetryPolicy struct {
	// Attempts is the total number of attempts; 0 and 1 mean no retry.
	Attempts int
	// Initial is the delay before the second attempt (default 1s).
	Initial time.Duration
	// Max caps the delay (default 30s).
	Max time.Duration
	// Multiplier grows the delay each attempt (default 2).
	Multiplier float64
	// Jitter spreads each delay by up to this fraction either way (default
	// 0.2; negative for none), so retries of many clients do not align.
	Jitter float64
	// RetryTimeouts also retries attempts that hit the step timeout.
	RetryTimeouts bool
}

// Backoff returns the delay after the given failed attempt (1-based).
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	initial, maxDelay, mult, jitter := p.Initial, p.Max, p.Multiplier, p.Jitter
	if initial <= 0 {
		initial = time.Second
	}
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second
	}
	if mult < 1 {
		mult = 2
	}
	if jitter == 0 {
		jitter = 0.2
	}
	d := float64(initial) * math.Pow(mult, float64(attempt-1))
	if d > float64(maxDelay) {
		d = float64(maxDelay)
	}
	if jitter > 0 {
		d *= 1 + jitter*(2*rand.Float64()-1)
	}
	return time.Duration(d)
}
