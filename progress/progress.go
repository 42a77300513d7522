// Package progress shows a pipeline run to a person: on a terminal, a live
// block with one line per running step and its elapsed time, redrawn in
// place, above which finished steps stay; elsewhere (CI, pipes), one plain
// line per event. Both are pipelines.Observers.
package progress

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/pipelines"
)

// IsTerminal reports whether f is an interactive terminal worth redrawing:
// a character device, TERM not "dumb", and not in CI.
func IsTerminal(f *os.File) bool {
	if os.Getenv("CI") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Plain writes one line per event: for CI logs and pipes.
type Plain struct {
	mu sync.Mutex
	w  io.Writer
}

// NewPlain returns a Plain observer writing to w.
func NewPlain(w io.Writer) *Plain { return &Plain{w: w} }

// Observe writes the event's line.
func (p *Plain) Observe(e pipelines.Event) {
	line := eventLine(e)
	if line == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, line)
}

func eventLine(e pipelines.Event) string {
	switch e.Kind {
	case pipelines.StepStarted:
		if e.Attempt > 1 {
			return fmt.Sprintf("[%s] started (attempt %d)", e.Step, e.Attempt)
		}
		return fmt.Sprintf("[%s] started", e.Step)
	case pipelines.StepRetrying:
		return fmt.Sprintf("[%s] attempt %d failed: %v; retrying in %s", e.Step, e.Attempt, e.Err, round(e.Delay))
	case pipelines.StepFinished:
		return finishedLine(e)
	case pipelines.RunFinished:
		return fmt.Sprintf("steps %s in %s", e.State, round(e.Elapsed)) // the verdict (a kept release that failed its checks, say) follows
	}
	return ""
}

func finishedLine(e pipelines.Event) string {
	mark := map[pipelines.State]string{pipelines.Succeeded: "ok", pipelines.Failed: "FAILED", pipelines.Skipped: "skipped", pipelines.Cancelled: "cancelled"}[e.State]
	line := fmt.Sprintf("[%s] %s", e.Step, mark)
	if e.Elapsed > 0 {
		line += " in " + round(e.Elapsed).String()
	}
	if e.Err != nil && e.State != pipelines.Succeeded {
		line += ": " + oneLine(e.Err.Error())
	} else if e.Reason != "" {
		line += " (" + e.Reason + ")"
	}
	return line
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " | ") }

// duration is a rounded, readable duration ("<1ms", "12ms", "3.4s").
type duration time.Duration

func (d duration) String() string {
	switch t := time.Duration(d); {
	case t < time.Millisecond:
		return "<1ms"
	case t < time.Second:
		return t.Round(time.Millisecond).String()
	default:
		return t.Round(100 * time.Millisecond).String()
	}
}

func round(d time.Duration) duration { return duration(d) }

// Live redraws a block of running steps in place on a terminal. Finished
// steps are printed once above the block and stay. Call Start to begin the
// redraw ticker and Stop when the run is over.
type Live struct {
	mu       sync.Mutex
	w        io.Writer
	now      func() time.Time
	running  map[string]runningStep
	drawn    int // lines of the block currently on screen
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type runningStep struct {
	since   time.Time
	attempt int
	note    string
}

// NewLive returns a Live observer writing to w (a terminal).
func NewLive(w io.Writer) *Live {
	return &Live{w: w, now: time.Now, running: map[string]runningStep{}, stop: make(chan struct{})}
}

// Start redraws the block every interval until Stop.
func (l *Live) Start(interval time.Duration) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.mu.Lock()
				l.redraw("")
				l.mu.Unlock()
			case <-l.stop:
				return
			}
		}
	}()
}

// Stop ends the redraws and clears the block.
func (l *Live) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
}

// Observe updates the block; finished steps are printed above it.
func (l *Live) Observe(e pipelines.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Kind {
	case pipelines.StepStarted:
		rs, ok := l.running[e.Step]
		if !ok {
			rs.since = e.Time.Add(-e.Elapsed)
		}
		rs.attempt, rs.note = e.Attempt, ""
		l.running[e.Step] = rs
		l.redraw("")
	case pipelines.StepRetrying:
		rs := l.running[e.Step]
		rs.note = fmt.Sprintf("retrying in %s: %s", round(e.Delay), oneLine(e.Err.Error()))
		l.running[e.Step] = rs
		l.redraw("")
	case pipelines.StepFinished:
		delete(l.running, e.Step)
		l.redraw(finishedLine(e))
	case pipelines.RunFinished:
		l.redraw(eventLine(e))
	}
}

// clear erases the block: up to its first line, then clear to the end.
func (l *Live) clear() {
	if l.drawn > 0 {
		fmt.Fprintf(l.w, "\x1b[%dA\r\x1b[J", l.drawn)
		l.drawn = 0
	}
}

// redraw erases the block, prints a permanent line when given, then draws
// the running steps sorted by start.
func (l *Live) redraw(permanent string) {
	var b strings.Builder
	if l.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", l.drawn)
	}
	if permanent != "" {
		b.WriteString(permanent + "\n")
	}
	names := make([]string, 0, len(l.running))
	for n := range l.running {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, c := l.running[names[i]], l.running[names[j]]
		if !a.since.Equal(c.since) {
			return a.since.Before(c.since)
		}
		return names[i] < names[j]
	})
	now := l.now()
	for _, n := range names {
		rs := l.running[n]
		line := fmt.Sprintf("  ... %-24s %6.1fs", n, now.Sub(rs.since).Seconds())
		if rs.attempt > 1 {
			line += fmt.Sprintf("  attempt %d", rs.attempt)
		}
		if rs.note != "" {
			line += "  " + rs.note
		}
		b.WriteString(truncate(line, 120) + "\n")
	}
	l.drawn = len(names)
	io.WriteString(l.w, b.String())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
