package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/redact"
)

// masker masks every value a secret reference of the configuration
// resolves to (whatever an app prints, it never reaches an output).
func masker(cfg *config.Config, res *config.Resolver) *redact.Redactor {
	red := redact.New()
	if res == nil {
		return red
	}
	r := *res
	r.OnResolve = func(v string) { red.Add(v) }
	for _, u := range cfg.AllSecretRefs() {
		_, _ = r.Resolve(u.Ref)
	}
	return red
}

// ReadErrorLines puts the new release's error lines (its backend's
// output, from its start to now: the gate and the watch window) from the
// log store of every target where it started into the outcome: distinct
// lines with their counts, at most monitoring.logs.error_lines, secrets
// masked. A store that cannot be read is said in ErrorLinesFrom, never an
// error of the run.
func (r *Rollout) ReadErrorLines(ctx context.Context, out *Outcome) {
	cfg := r.req.Deploy.Config
	if !cfg.Monitoring.LogsOn() {
		return
	}
	targets := r.d.StartedOn()
	if len(targets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := monitoring.LogStoreFor(cfg)
	if err != nil {
		out.ErrorLinesFrom = err.Error()
		return
	}
	red := masker(cfg, r.req.Deploy.Resolver)
	var lines []monitoring.ErrorLine
	var failed []string
	for _, t := range targets {
		got, err := monitoring.ReadErrorLines(ctx, monitoring.StoreClient(t.Host, s.Listen), t.Name, t.Layout.Name, r.d.ID(), r.began, cfg.Monitoring.Logs.ErrorLines)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", t.Name, err))
			continue
		}
		lines = append(lines, got...)
	}
	if n := cfg.Monitoring.Logs.ErrorLines; len(lines) > n {
		lines = lines[:n]
	}
	for i := range lines {
		lines[i].Line = red.String(lines[i].Line)
	}
	out.ErrorLines = lines
	out.ErrorLinesFrom = "the log store"
	if len(failed) > 0 {
		out.ErrorLinesFrom += "; not read on " + red.String(strings.Join(failed, "; "))
	}
}

// FormatErrorLines prints error lines for people: each distinct line once,
// with how often it came.
func FormatErrorLines(lines []monitoring.ErrorLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s: %s", l.Target, l.Line)
		if l.Count > 1 {
			fmt.Fprintf(&b, "  (%d times, the last at %s)", l.Count, l.Last.Local().Format(time.TimeOnly))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
