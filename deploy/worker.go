package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/remote"
)

// Worker steps (targets with the worker role).
const (
	StepStartWorker  = "start-worker"
	StepSwitchWorker = "switch-worker"
)

// UndoStart starts Container again (a previous worker this run stopped).
const UndoStart UndoKind = "start-container"

func init() { undoKinds = append(undoKinds, UndoStart) }

// isWorkerOnly says the target runs workers and no web backend.
func (tr *targetRun) isWorkerOnly() bool {
	return tr.cfg.HasRole("worker") && !tr.cfg.HasRole("web")
}

// workerGate is how long a new worker must run steadily: the health
// gate's passes at its interval, at least 2 s.
func (d *Deployment) workerGate() time.Duration {
	g := d.req.Config.Backend.HealthGate
	return max(2*time.Second, time.Duration(g.ConsecutivePasses)*g.Interval.D())
}

// startWorker runs backend.worker_command in the new image (its removal
// recorded first), then watches it: one that exits or restarts within
// the worker gate fails the step with its last lines.
func (d *Deployment) startWorker(ctx context.Context, tr *targetRun) error {
	name := tr.layout.Worker(d.req.ID)
	if err := tr.record(StepStartWorker, Undo{Kind: UndoContainer, Container: name}); err != nil {
		return err
	}
	d.touchSchema()
	b := d.req.Config.Backend
	spec := d.spec(tr, name, true, b.WorkerCommand)
	spec.HostPort, spec.ReplaceEntrypoint = 0, true
	if _, err := tr.host.Run(ctx, tr.docker.Run(spec)...); err != nil {
		return fmt.Errorf("starting the new worker: %w", err)
	}
	gctx, cancel := context.WithTimeout(ctx, d.workerGate())
	defer cancel()
	crash := WatchCrashes(gctx, func(ctx context.Context) string { return crashOfContainer(ctx, tr, name) })
	if why, ok := <-crash; ok {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer ccancel()
		logs, _ := tr.host.Run(cctx, "sh", "-c", remote.Quote(tr.docker.Logs(name, 40)...)+" 2>&1")
		return fmt.Errorf("worker gate: the new worker %s %s\n--- last lines of %s ---\n%s", name, why, name, strings.TrimSpace(logs))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return (engine{tr.host, tr.docker}).runningSteadily(ctx, name)
}

// switchWorker stops the previous release's worker (its start again
// recorded first) once the new one runs steadily; on a target with no web
// role the new release becomes current in state.json here.
func (d *Deployment) switchWorker(ctx context.Context, tr *targetRun) error {
	if tr.previous != nil {
		old := tr.layout.Worker(tr.previous.ID)
		if tr.isWorkerOnly() && tr.previous.Container != "" {
			old = tr.previous.Container
		}
		if _, err := tr.host.Run(ctx, tr.docker.cmd("inspect", "--format", "{{.State.Running}}", old)...); err == nil {
			if err := tr.record(StepSwitchWorker, Undo{Kind: UndoStart, Container: old}); err != nil {
				return err
			}
			if _, err := tr.host.Run(ctx, tr.docker.Stop(old, 30)...); err != nil {
				return fmt.Errorf("stopping the previous worker %s: %w", old, err)
			}
		}
	}
	if !tr.isWorkerOnly() {
		return nil
	}
	tr.mu.Lock()
	tr.container, tr.port = tr.layout.Worker(d.req.ID), 0
	tr.mu.Unlock()
	return d.recordCurrent(tr)
}
