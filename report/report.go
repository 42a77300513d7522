// Package report writes what every run leaves behind: a JSON report
// (reports/<verb>_<id>.json) and a log file (logs/<verb>_<id>.log), both
// passed through a redactor so no secret reaches them.
package report

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/lawsker/lawsker-deploy/internal/atomicfile"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/redact"
)

// FormatVersion is the version of the report layout.
const FormatVersion = 1

// Status of a run as written in reports.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	// StatusInvalid: the run could not start (bad config or arguments).
	StatusInvalid = "invalid"
	// StatusSuperseded: a deploy waiting for the lock was replaced by a
	// newer one (--supersede); nothing was changed.
	StatusSuperseded = "superseded"
)

// Report is one run's JSON report.
type Report struct {
	FormatVersion int          `json:"format_version"`
	Verb          string       `json:"verb"`
	ID            string       `json:"id"`
	Status        string       `json:"status"`
	Start         time.Time    `json:"start"`
	End           time.Time    `json:"end"`
	DurationMS    int64        `json:"duration_ms"`
	Config        string       `json:"config,omitempty"`
	ToolVersion   string       `json:"tool_version,omitempty"`
	Steps         []StepReport `json:"steps"`
	Error         string       `json:"error,omitempty"`
	// Details holds what the verb reports beyond steps (a plan, a summary).
	Details any    `json:"details,omitempty"`
	LogFile string `json:"log_file,omitempty"`
}

// StepReport is one step of a run.
type StepReport struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Attempts   int        `json:"attempts"`
	Start      *time.Time `json:"start,omitempty"`
	End        *time.Time `json:"end,omitempty"`
	DurationMS int64      `json:"duration_ms"`
	Error      string     `json:"error,omitempty"`
	Reason     string     `json:"reason,omitempty"`
}

var idPattern = regexp.MustCompile(`^[0-9]{8}_[0-9]{6}_[0-9a-f]{6}$`)

// NewID returns a run id: the UTC time and 6 random hex digits
// (20261126_031206_a1b2c3), sortable and unique enough for one host.
func NewID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102_150405") + "_" + hex.EncodeToString(b[:])
}

// ValidID reports whether id has the form NewID makes.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// New starts a report for a verb.
func New(verb, id string, start time.Time) *Report {
	return &Report{FormatVersion: FormatVersion, Verb: verb, ID: id, Start: start.UTC(), Steps: []StepReport{}}
}

// Finish records the outcome of a pipeline run (steps, status, error).
func (r *Report) Finish(res *pipelines.Result, end time.Time) {
	for _, s := range res.Steps {
		sr := StepReport{Name: s.Name, Status: s.State.String(), Attempts: s.Attempts, DurationMS: s.Duration().Milliseconds(), Reason: s.Reason}
		if !s.Start.IsZero() {
			st, en := s.Start.UTC(), s.End.UTC()
			sr.Start, sr.End = &st, &en
		}
		if s.Err != nil && s.State != pipelines.Succeeded {
			sr.Error = s.Err.Error()
		}
		r.Steps = append(r.Steps, sr)
	}
	status := map[pipelines.State]string{pipelines.Succeeded: StatusSucceeded, pipelines.Failed: StatusFailed, pipelines.Cancelled: StatusCancelled}[res.State]
	var errText string
	if err := res.Err(); err != nil {
		errText = err.Error()
	}
	r.Close(status, errText, end)
}

// Close sets the final status, error text and end time.
func (r *Report) Close(status, errText string, end time.Time) {
	r.Status, r.Error = status, errText
	r.End = end.UTC()
	r.DurationMS = r.End.Sub(r.Start).Milliseconds()
}

// Path is where the report is written under dir.
func (r *Report) Path(dir string) string {
	return filepath.Join(dir, fmt.Sprintf("%s_%s.json", r.Verb, r.ID))
}

// Write writes the report under dir atomically (temporary file, then
// rename), masked by red. It returns the file's path.
func (r *Report) Write(dir string, red *redact.Redactor) (string, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	data = append(red.Bytes(data), '\n')
	path := r.Path(dir)
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return path, nil
}

// Log is a run's log file.
type Log struct {
	Path   string
	Logger *slog.Logger
	file   *os.File
	w      *redact.Writer
}

// OpenLog creates logs/<verb>_<id>.log under dir with a JSON slog handler
// whose output is masked by red.
func OpenLog(dir, verb, id string, red *redact.Redactor, level slog.Level) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s_%s.log", verb, id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	w := red.NewWriter(f)
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return &Log{Path: path, Logger: slog.New(h).With("run", id, "verb", verb), file: f, w: w}, nil
}

// Close flushes and closes the file.
func (l *Log) Close() error {
	return errors.Join(l.w.Flush(), l.file.Close())
}
