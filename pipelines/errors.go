package pipelines

import (
	"errors"
	"fmt"
)

// SkipError is returned by a step that decided it has nothing to do. The
// step is recorded as skipped with the reason, and steps that need it run.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// Skip returns a SkipError with the reason.
func Skip(format string, args ...any) error {
	return &SkipError{Reason: fmt.Sprintf(format, args...)}
}

// IsSkip reports whether err is (or wraps) a SkipError, and its reason.
func IsSkip(err error) (string, bool) {
	var s *SkipError
	if errors.As(err, &s) {
		return s.Reason, true
	}
	return "", false
}

type retriable struct{ err error }

func (r retriable) Error() string { return r.err.Error() }
func (r retriable) Unwrap() error { return r.err }

// Retriable marks err as worth another attempt (a dropped connection, a 503).
// Only marked errors are retried; everything else fails the step at once.
func Retriable(err error) error {
	if err == nil {
		return nil
	}
	return retriable{err}
}

// IsRetriable reports whether err was marked with Retriable.
func IsRetriable(err error) bool {
	var r retriable
	return errors.As(err, &r)
}

// ErrCancelled is returned by Result.Err when the run was cancelled.
var ErrCancelled = errors.New("run cancelled")
