package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// StepSwitchBack is the step that makes the previous release serve again.
const StepSwitchBack = "switch-back"

// PrepareSwitchBack builds the DAG that puts the warm previous release back
// on every target: lock, switch back (its backend is health-gated first,
// and started again if the rollback window already stopped it), unlock.
// req needs Config, Resolver, Who and ID.
func PrepareSwitchBack(req Request) (*Deployment, error) {
	d := &Deployment{req: req, log: req.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for _, t := range req.Config.Targets {
		d.targets = append(d.targets, &targetRun{cfg: t, layout: NewLayout(req.Config, t), docker: Docker{Host: t.Docker.Host}, nginx: Nginx{cfg: t.Nginx}})
	}
	var steps []pipelines.Step
	network := pipelines.RetryPolicy{Attempts: 3, Initial: time.Second, Max: 5 * time.Second}
	for _, tr := range d.targets {
		n := tr.cfg.Name
		steps = append(steps,
			pipelines.Step{Name: StepLock + ":" + n, Timeout: 2 * time.Minute, Retry: network,
				Description: "connect and take the deploy lock", Run: func(ctx context.Context) error { return d.lock(ctx, tr) }},
			pipelines.Step{Name: StepSwitchBack + ":" + n, Needs: []string{StepLock + ":" + n}, Timeout: 2 * time.Minute,
				Description: "point nginx back at the previous release (its backend is still warm)",
				Run:         func(ctx context.Context) error { return d.switchBack(ctx, tr) }},
			pipelines.Step{Name: StepUnlock + ":" + n, Needs: []string{StepSwitchBack + ":" + n}, Always: true, Timeout: time.Minute,
				Description: "release the deploy lock", Run: func(ctx context.Context) error { return d.unlock(ctx, tr) }},
		)
	}
	g, err := pipelines.New(steps...)
	if err != nil {
		return nil, err
	}
	d.graph = g
	return d, nil
}

func (d *Deployment) switchBack(ctx context.Context, tr *targetRun) error {
	h, l := tr.host, tr.layout
	st, err := d.loadState(ctx, tr)
	if err != nil {
		return err
	}
	cur, hasCur := st.Current()
	prev, ok := st.Previous()
	if !ok {
		return fmt.Errorf("%s has no previous release to switch back to (its backend is kept for backend.rollback_window after a deploy); roll back to a snapshot instead", tr.cfg.Name)
	}
	running, err := h.Run(ctx, append(tr.docker.cmd("inspect", "--format", "{{.State.Running}}"), prev.Container)...)
	if err != nil {
		return fmt.Errorf("the previous release's container %s is gone (%v); roll back to a snapshot instead", prev.Container, err)
	}
	if strings.TrimSpace(running) != "true" {
		if _, err := h.Run(ctx, tr.docker.Start(prev.Container)...); err != nil {
			return fmt.Errorf("starting the previous release's container again: %w", err)
		}
	}
	b := d.req.Config.Backend
	gate := b.HealthGate
	if strings.TrimSpace(running) == "true" {
		gate.ConsecutivePasses = 1 // it has been serving; one pass proves it still does
	}
	if err := HealthGate(ctx, h, prev.Port, b.HealthPath, hostHeader(d.req.Config), gate); err != nil {
		return fmt.Errorf("the previous release is not healthy, so it was not switched to: %w", err)
	}
	if err := h.Symlink(ctx, l.SiteConf(prev.ID), l.SitePath); err != nil {
		return err
	}
	if _, err := h.Run(ctx, tr.nginx.Test()...); err != nil {
		if hasCur {
			_ = h.Symlink(context.WithoutCancel(ctx), l.SiteConf(cur.ID), l.SitePath)
		}
		return fmt.Errorf("nginx -t refused the previous release's site configuration (nothing was reloaded): %w", err)
	}
	// One session: reload, `current`, and the delayed stop of the release
	// switched away from (kept warm for the rollback window).
	cmds := append([][]string{tr.nginx.Reload()}, remote.SymlinkCmds(l.Release(prev.ID), l.Current())...)
	if hasCur {
		cmds = append(cmds, []string{"sh", "-c", "setsid sh -c " + remote.Quote(stopAfter(tr.docker, l, cur.Container, b.RollbackWindow.D())) + " >/dev/null 2>&1 </dev/null &"})
	}
	if _, err := h.RunScript(ctx, nil, cmds...); err != nil {
		return fmt.Errorf("nginx reload: %w", err)
	}
	if err := WaitServing(ctx, h, "http://"+nginxAddr(tr.cfg.Nginx), b.HealthPath, hostHeader(d.req.Config), prev.ID, 15*time.Second); err != nil {
		return err
	}
	if err := h.WriteFile(l.CurrentContainer(), []byte(prev.Container+"\n"), 0o644); err != nil {
		return err
	}
	for i := range st.Releases {
		switch st.Releases[i].ID {
		case prev.ID:
			st.Releases[i].Status = StatusCurrent
		case cur.ID:
			st.Releases[i].Status = StatusPrevious
		}
	}
	if err := SaveState(h, l, st); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.previous = &cur
	tr.port, tr.container = prev.Port, prev.Container
	tr.release, tr.image = prev.ID, prev.Image
	tr.mu.Unlock()
	return nil
}

// PrepareLocked builds a graph that runs one piece of work on the first
// target under the deploy lock (a database-only rollback): lock, the work,
// unlock (also after a failure). req needs Config, Resolver, Who and ID.
func PrepareLocked(req Request, name, description string, work func(ctx context.Context, h *remote.Host) error) (*Deployment, error) {
	d := &Deployment{req: req, log: req.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	t := req.Config.Targets[0]
	tr := &targetRun{cfg: t, layout: NewLayout(req.Config, t), docker: Docker{Host: t.Docker.Host}, nginx: Nginx{cfg: t.Nginx}}
	d.targets = []*targetRun{tr}
	network := pipelines.RetryPolicy{Attempts: 3, Initial: time.Second, Max: 5 * time.Second}
	n := tr.cfg.Name
	g, err := pipelines.New(
		pipelines.Step{Name: StepLock + ":" + n, Timeout: 2 * time.Minute, Retry: network,
			Description: "connect and take the deploy lock", Run: func(ctx context.Context) error { return d.lock(ctx, tr) }},
		pipelines.Step{Name: name, Needs: []string{StepLock + ":" + n}, Timeout: time.Hour, Description: description,
			Run: func(ctx context.Context) error {
				err := work(ctx, tr.host)
				if err == nil {
					tr.mu.Lock()
					tr.completed = true
					tr.mu.Unlock()
				}
				return err
			}},
		pipelines.Step{Name: StepUnlock + ":" + n, Needs: []string{name}, Always: true, Timeout: time.Minute,
			Description: "release the deploy lock", Run: func(ctx context.Context) error { return d.unlock(ctx, tr) }},
	)
	if err != nil {
		return nil, err
	}
	d.graph = g
	return d, nil
}
