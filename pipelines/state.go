package pipelines

import (
	"fmt"
	"time"
)

// State is where a step is in its life.
type State int

// Step states. A step ends in Succeeded, Failed, Skipped or Cancelled.
const (
	Pending State = iota
	Running
	Succeeded
	Failed
	Skipped
	Cancelled
)

var stateNames = [...]string{"pending", "running", "succeeded", "failed", "skipped", "cancelled"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// MarshalText writes the state's name (JSON reports).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Done reports whether the state is final.
func (s State) Done() bool { return s >= Succeeded }

// EventKind says what happened.
type EventKind int

// Event kinds.
const (
	RunStarted   EventKind = iota // Step is empty
	StepStarted                   // an attempt began (Attempt >= 1)
	StepRetrying                  // an attempt failed with a retriable error; Delay until the next
	StepFinished                  // the step reached a final State
	RunFinished                   // Step is empty; State is the run's outcome
)

// Event is one change observers are told about.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Step    string
	State   State
	Attempt int
	// Elapsed is the time since the step (or run) started.
	Elapsed time.Duration
	// Delay is the wait before the next attempt (StepRetrying).
	Delay time.Duration
	// Err is the attempt's or step's error (StepRetrying, StepFinished).
	Err error
	// Reason says why a step was skipped or cancelled.
	Reason string
}

// Observer is told of every event, one call at a time (the runner
// serialises calls), in the order they happened.
type Observer interface{ Observe(Event) }

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }

// Observers fans events out to several observers.
type Observers []Observer

// Observe sends e to each observer in turn.
func (os Observers) Observe(e Event) {
	for _, o := range os {
		if o != nil {
			o.Observe(e)
		}
	}
}
