package pipelines

import (
	"errors"
	"fmt"
	"time"
)

// StepResult is how one step ended.
type StepResult struct {
	Name     string
	State    State
	Attempts int
	Start    time.Time // zero when the step never started
	End      time.Time
	Err      error
	// Reason says why the step was skipped or cancelled.
	Reason string
}

// Duration is the time from the first attempt's start to the end.
func (r StepResult) Duration() time.Duration {
	if r.Start.IsZero() {
		return 0
	}
	return r.End.Sub(r.Start)
}

// Result is how a run ended.
type Result struct {
	Start, End time.Time
	// State is Succeeded, Failed (a step failed) or Cancelled.
	State State
	// Steps in the graph's order.
	Steps []StepResult
}

// Duration is the run's wall time.
func (r *Result) Duration() time.Duration { return r.End.Sub(r.Start) }

// Step returns the result of the named step.
func (r *Result) Step(name string) (StepResult, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepResult{}, false
}

// Err joins the failed steps' errors, each prefixed with the step name, and
// ErrCancelled when the run was cancelled. It is nil when the run succeeded.
func (r *Result) Err() error {
	var errs []error
	for _, s := range r.Steps {
		if s.State == Failed {
			errs = append(errs, fmt.Errorf("step %s: %w", s.Name, s.Err))
		}
	}
	if r.State == Cancelled {
		errs = append(errs, ErrCancelled)
	}
	return errors.Join(errs...)
}
