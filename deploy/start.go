package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	monitoringpkg "github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

func (d *Deployment) spec(tr *targetRun, name string, detach bool, command []string) ContainerSpec {
	b := d.req.Config.Backend
	spec := ContainerSpec{Name: name, App: tr.layout.App, Base: tr.layout.Base, Release: d.req.ID, Image: d.req.Image, EnvFile: tr.layout.EnvFile(d.req.ID),
		Network: b.Network, PortEnv: b.PortEnv, HostPort: tr.port, ContainerPort: b.Port, Command: command, Detach: detach}
	if detach { // a long-running backend: its output goes to the log store too
		spec.Log = monitoringpkg.BackendLogOptions(d.req.Config, tr.layout.Name, d.req.ID)
	}
	return spec
}

// logStore runs the target's log store (monitoring.logs) before the new
// backend starts, so its first lines are kept. A store that cannot start
// is a warning, never a failed deploy: the backend's output stays in
// docker logs.
func (d *Deployment) logStore(ctx context.Context, tr *targetRun) error {
	s, err := monitoringpkg.LogStoreFor(d.req.Config)
	if err == nil {
		var state string
		state, err = monitoringpkg.EnsureLogStore(ctx, d.monitoringTarget(tr), s)
		if err == nil {
			d.log.Info("log store", "target", tr.cfg.Name, "state", state, "listen", s.Listen)
			return nil
		}
	}
	d.mu.Lock()
	d.storeDown = append(d.storeDown, tr.cfg.Name+": "+err.Error())
	d.mu.Unlock()
	return pipelines.Skip("the log store is not running (%v); the deploy goes on, the backend's output stays in docker logs", err)
}

// monitoringTarget is a target as package monitoring sees it.
func (d *Deployment) monitoringTarget(tr *targetRun) monitoringpkg.Target {
	return monitoringpkg.Target{Host: tr.host, Base: tr.layout.Base, App: d.req.Config.App, Name: tr.layout.Name, Docker: tr.docker}
}

// Warnings are what the run noticed without failing: one line for every
// target whose log store could not run.
func (d *Deployment) Warnings() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	if len(d.unreachable) > 0 {
		out = append(out, "deployed without the unreachable target(s) "+strings.Join(d.unreachable, "; ")+" (--skip-unreachable): they still run their previous release; deploy again once they are back")
	}
	if len(d.storeDown) == 0 {
		return out
	}
	return append(out, "the log store is not running on "+strings.Join(d.storeDown, "; ")+
		" (the deploy went on; this release's output is in docker logs there, and logs reads it from there)")
}

// migrate runs the migrations once. It records first that its container
// goes (the pre-deploy snapshot step recorded the database's undo).
func (d *Deployment) migrate(ctx context.Context, tr *targetRun) error {
	name := tr.layout.Migration(d.req.ID)
	if err := tr.record(StepMigrate, Undo{Kind: UndoContainer, Container: name}); err != nil {
		return err
	}
	d.touchSchema()
	b := d.req.Config.Backend
	spec := d.spec(tr, name, false, b.MigrateCommand)
	spec.HostPort = 0 // a one-off: no port
	spec.ReplaceEntrypoint = b.MigrateEntrypoint != "keep"
	argv := strings.Join(b.MigrateCommand, " ")
	// Its output is logged line by line as it comes (stdout and stderr
	// both); a migration that keeps running is reported every 30 s with
	// how long it ran and how long it has been silent.
	out := &lineLog{emit: func(line string) { d.log.Info("migration", "target", tr.cfg.Name, "line", line) }, seen: time.Now()}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(30 * time.Second):
				d.log.Warn("migration still running", "target", tr.cfg.Name, "command", argv, "elapsed", time.Since(start).Round(time.Second).String(),
					"silent_for", out.silence().Round(time.Second).String(), "timeout", d.req.Config.Execution.StepTimeout.String())
			}
		}
	}()
	err := tr.host.RunStream(ctx, nil, out, "sh", "-c", remote.Quote(tr.docker.Run(spec)...)+" 2>&1")
	close(done)
	if err != nil {
		// Paired cleanup: a cancelled or failed one-off must not linger.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = removeContainer(cctx, tr.host, tr.docker, name)
		if ctx.Err() != nil {
			err = fmt.Errorf("stopped after %s (the step's timeout, execution.step_timeout %s, or a cancel); a migration that starts a server instead of migrating runs until then: %w",
				time.Since(start).Round(time.Second), d.req.Config.Execution.StepTimeout, err)
		}
		return fmt.Errorf("migration `%s` failed; nothing was switched: %w\n--- its last lines ---\n%s", argv, err, out.tail())
	}
	d.log.Info("migration done", "target", tr.cfg.Name, "elapsed", time.Since(start).Round(time.Millisecond).String(), "output", lastLine(out.tail()))
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// lineLog hands each complete line written to it to emit, and keeps the
// last 20 lines and when output last came.
type lineLog struct {
	mu      sync.Mutex
	emit    func(string)
	partial []byte
	last    []string
	seen    time.Time
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = time.Now()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.partial[:i]), "\r")
		w.partial = w.partial[i+1:]
		w.emit(line)
		if w.last = append(w.last, line); len(w.last) > 20 {
			w.last = w.last[1:]
		}
	}
	return len(p), nil
}

func (w *lineLog) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(append(append([]string(nil), w.last...), string(w.partial)), "\n")
}

// silence is how long no output came.
func (w *lineLog) silence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Since(w.seen)
}

// start runs the new backend beside the old one; its removal is recorded
// first.
func (d *Deployment) start(ctx context.Context, tr *targetRun) error {
	if err := tr.record(StepStartBackend, Undo{Kind: UndoContainer, Container: tr.container}); err != nil {
		return err
	}
	d.touchSchema() // many apps migrate their database at start
	if _, err := tr.host.Run(ctx, tr.docker.Run(d.spec(tr, tr.container, true, nil))...); err != nil {
		return fmt.Errorf("starting the new backend: %w", err)
	}
	return nil
}

func (d *Deployment) health(ctx context.Context, tr *targetRun) error {
	b := d.req.Config.Backend
	gate := b.HealthGate
	if d.holding() && gate.Interval.D() > holdInterval {
		gate.Interval = config.Duration(holdInterval) // every request waits for this gate
	}
	// The container is watched beside the checks: one that exits or
	// restarts ends the gate at once (not at its deadline).
	gctx, stop := context.WithCancelCause(ctx)
	crashes := WatchCrashes(gctx, func(ctx context.Context) string { return d.crashOf(ctx, tr) })
	go func() {
		if why, ok := <-crashes; ok {
			stop(fmt.Errorf("health gate: the new backend %s %s", tr.container, why))
		}
	}()
	err := HealthGate(gctx, tr.host, tr.port, b, hostHeader(d.req.Config), gate)
	stop(nil)
	if cause := context.Cause(gctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if err == nil {
		// The answers must have come from our container: one that failed
		// to bind (the port taken between the probe and the start) exits or
		// restarts, while something else may answer on the port.
		err = d.stillRunning(ctx, tr)
	}
	if err == nil {
		d.recordSchema(ctx, tr)
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	// The container's stdout and stderr both, in order; a line repeated
	// (an error printed at every check) is counted, not repeated, so the
	// line saying how the backend started stays in view.
	logs, lerr := tr.host.Run(cctx, "sh", "-c", remote.Quote(tr.docker.Logs(tr.container, 400)...)+" 2>&1")
	if lerr != nil {
		logs = "(its logs could not be read: " + lerr.Error() + ")"
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, tr.container, CountRepeats(logs, 40))
}

// CountRepeats gives each distinct line of text once, in the order it
// first came, with how many times it came when more than once; of more
// than max distinct lines, the first and the last are kept.
func CountRepeats(text string, max int) string {
	var order []string
	count := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if count[l] == 0 {
			order = append(order, l)
		}
		count[l]++
	}
	if len(order) > max {
		head := max / 4
		order = append(append(order[:head:head], fmt.Sprintf("... (%d more distinct lines)", len(order)-max)), order[len(order)-(max-head):]...)
	}
	out := make([]string, len(order))
	for i, l := range order {
		out[i] = l
		if n := count[l]; n > 1 {
			out[i] = fmt.Sprintf("%s  (%d times)", l, n)
		}
	}
	return strings.Join(out, "\n")
}

// crashOf says what went wrong with a target's new backend ("" when it
// runs steadily, or its state cannot be read).
func (d *Deployment) crashOf(ctx context.Context, tr *targetRun) string {
	return crashOfContainer(ctx, tr, tr.container)
}

// crashOfContainer says what went wrong with one of a target's containers
// ("" when it runs steadily, or its state cannot be read).
func crashOfContainer(ctx context.Context, tr *targetRun, name string) string {
	st, err := (engine{tr.host, tr.docker}).container(ctx, name)
	if err != nil {
		return ""
	}
	return st.crash()
}

// WatchCrashes asks crashed every 250 ms until ctx ends, and sends the
// first crash it reports; the channel is closed when the watch ends. The
// gate and the watch window share it.
func WatchCrashes(ctx context.Context, crashed func(context.Context) string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		defer close(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			if why := crashed(ctx); why != "" && ctx.Err() == nil {
				ch <- why
				return
			}
		}
	}()
	return ch
}

// Crashed says whether a target's new backend exited, restarted or was
// killed for memory since it started ("" when every one runs steadily):
// the watch window's crash trigger.
func (d *Deployment) Crashed(ctx context.Context) string {
	for _, tr := range d.targets {
		if tr.noop != "" || tr.container == "" {
			continue
		}
		if why := d.crashOf(ctx, tr); why != "" {
			return fmt.Sprintf("%s: the new backend %s %s", tr.cfg.Name, tr.container, why)
		}
	}
	return ""
}

// stillRunning checks the new container runs and never restarted.
func (d *Deployment) stillRunning(ctx context.Context, tr *targetRun) error {
	if (engine{tr.host, tr.docker}).runningSteadily(ctx, tr.container) == nil {
		return nil
	}
	out, err := tr.host.Run(ctx, tr.docker.cmd("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", tr.container)...)
	if err != nil {
		return fmt.Errorf("health gate: inspecting %s: %w", tr.container, err)
	}
	if f := strings.Fields(out); len(f) != 2 || f[0] != "true" || f[1] != "0" {
		return fmt.Errorf("health gate: the checks passed but %s is not running steadily (running, restarts: %s): something else answers on 127.0.0.1:%d", tr.container, strings.TrimSpace(out), tr.port)
	}
	return nil
}

// nginxAddr is where the app's site listens, as reached on the target.
func nginxAddr(n config.Nginx) string { return loopbackAddr(n.ListenAddress, n.Listen) }

func nginxTLSAddr(n config.Nginx) string { return loopbackAddr(n.ListenAddress, n.ListenTLS) }

func loopbackAddr(a string, port int) string {
	if a == "" || a == "0.0.0.0" || a == "::" {
		a = "127.0.0.1"
	}
	return net.JoinHostPort(a, strconv.Itoa(port))
}

func hostHeader(cfg *config.Config) string {
	if len(cfg.Domains) > 0 && !strings.HasPrefix(cfg.Domains[0], "*.") {
		return cfg.Domains[0]
	}
	return ""
}

// LogTarget is a target where this run started the new release.
type LogTarget struct {
	Name   string
	Host   *remote.Host
	Layout Layout
}

// StartedOn lists the targets where this run started the new release,
// with their connections (open until Close): where its lines are.
func (d *Deployment) StartedOn() []LogTarget {
	var out []LogTarget
	for _, tr := range d.targets {
		tr.mu.Lock()
		ok := tr.noop == "" && tr.container != "" && tr.host != nil
		tr.mu.Unlock()
		if ok {
			out = append(out, LogTarget{Name: tr.cfg.Name, Host: tr.host, Layout: tr.layout})
		}
	}
	return out
}

// ID is the deploy's (and the new release's) id.
func (d *Deployment) ID() string { return d.req.ID }
