package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
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
	d := newDeployment(req)
	var steps []pipelines.Step
	for _, tr := range d.targets {
		lock := d.lockStep(tr, "connect and take the deploy lock")
		sw := pipelines.Step{Name: StepSwitchBack + ":" + tr.cfg.Name, Needs: []string{lock.Name}, Timeout: 2 * time.Minute,
			Description: "point nginx back at the previous release (its backend is still warm)",
			Run:         func(ctx context.Context) error { return d.switchBack(ctx, tr) }}
		steps = append(steps, lock, sw, d.unlockStep(tr, sw.Name))
	}
	g, err := pipelines.New(steps...)
	if err != nil {
		return nil, err
	}
	d.graph = g
	return d, nil
}

// switchScript points the site at release to, checks and reloads nginx,
// then points `current` and the serving-container file at it, in one
// session; then (detached) the rest. Its exit codes say which part failed.
func switchScript(l Layout, n Nginx, to Release, then string) string {
	link := remote.Script(remote.SymlinkCmds(l.SiteConf(to.ID), l.SitePath)...)
	current := remote.Script(append(remote.SymlinkCmds(l.Release(to.ID), l.Current()), writeFileCmd(to.Container+"\n", l.CurrentContainer()))...)
	s := fmt.Sprintf("mkdir -p %s && %s || exit %d; %s || exit %d; %s || exit %d; %s",
		remote.Quote(path.Dir(l.SitePath)), link, exitSiteLink, remote.Quote(n.Test()...), exitNginxTest, remote.Quote(n.Reload()...), exitNginxReload, current)
	if then != "" {
		s += " && " + then
	}
	return s
}

// switchError says which part of switchScript failed.
func switchError(err error) error {
	var re *remote.RemoteError
	if errors.As(err, &re) && re.ExitCode == exitNginxTest {
		return fmt.Errorf("nginx -t refused the new site configuration (nothing was reloaded): %w", err)
	}
	return fmt.Errorf("switching nginx: %w", err)
}

// ensureRunning starts a stopped container again (one session) and says
// whether it was running.
func ensureRunning(ctx context.Context, h *remote.Host, dk Docker, container string) (bool, error) {
	api := engine{h, dk}
	if st, err := api.container(ctx, container); err == nil {
		if st.Running {
			return true, nil
		}
		if api.start(ctx, container) == nil {
			return false, nil
		}
	}
	const script = `s=$("$@" inspect --format '{{.State.Running}}' "$0") || exit 3; [ "$s" = true ] && { echo running; exit 0; }; "$@" start "$0" >/dev/null && echo started`
	out, err := h.Run(ctx, append([]string{"sh", "-c", script, container}, dk.cmd()...)...)
	var re *remote.RemoteError
	if errors.As(err, &re) && re.ExitCode == 3 {
		return false, fmt.Errorf("the previous release's container %s is gone (%v); roll back to a snapshot instead", container, err)
	}
	if err != nil {
		return false, fmt.Errorf("starting the previous release's container %s again: %w", container, err)
	}
	return strings.TrimSpace(out) == "running", nil
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
	if hk := d.req.Hooks.BeforeSwitchBack; hk != nil && tr == d.primary() {
		if err := hk(ctx, h, prev); err != nil {
			return err
		}
	}
	if tr.isWorkerOnly() {
		return d.switchBackWorker(ctx, tr, st, cur, hasCur, prev)
	}
	running, err := ensureRunning(ctx, h, tr.docker, prev.Container)
	if err != nil {
		return err
	}
	b := d.req.Config.Backend
	gate := b.HealthGate
	if running {
		gate.ConsecutivePasses = 1 // it has been serving; one pass proves it still does
	}
	if err := HealthGate(ctx, h, prev.Port, b, hostHeader(d.req.Config), gate); err != nil {
		return fmt.Errorf("the previous release is not healthy, so it was not switched to: %w", err)
	}
	// Write-ahead: a kill from here on is undone by the next run (the
	// release switched away from serves again; run the switch back again).
	var was *Release
	if hasCur {
		was = &cur
	}
	if err := d.journalSwitchBack(tr, st, prev, cur, func(history Undo) []Undo { return []Undo{{Kind: UndoSite, To: was}, history} }); err != nil {
		return err
	}
	// The release switched away from is kept warm for the rollback window.
	then := ""
	if hasCur {
		then = detachCmd(stopAfter(tr.docker, l, cur.Container, b.RollbackWindow.D()))
	}
	tr.nginxPidFile(ctx)
	if _, err := h.Run(ctx, "sh", "-c", switchScript(l, tr.nginxCmds(), prev, then)); err != nil {
		return errors.Join(switchError(err), d.undoEnv(tr).replay(context.WithoutCancel(ctx), nil))
	}
	if err := d.confirmServing(ctx, tr, "http://"+nginxAddr(tr.cfg.Nginx), b.HealthPath, prev.ID); err != nil {
		return errors.Join(err, d.undoEnv(tr).replay(context.WithoutCancel(ctx), nil))
	}
	if tr.cfg.HasRole("worker") {
		// The previous release's worker back, the switched-away one's stopped.
		if _, err := h.Run(ctx, tr.docker.cmd("inspect", "--format", "{{.Name}}", l.Worker(prev.ID))...); err == nil {
			if _, err := ensureRunning(ctx, h, tr.docker, l.Worker(prev.ID)); err != nil {
				return err
			}
		}
		if hasCur {
			if _, err := h.Run(ctx, tr.docker.Stop(l.Worker(cur.ID), 30)...); err != nil && !strings.Contains(err.Error(), "No such container") {
				return fmt.Errorf("stopping the worker of %s: %w", cur.ID, err)
			}
		}
	}
	st.InProgress = nil
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

// PrepareLocked builds a graph that runs one piece of work on the primary
// target under the deploy lock (a database-only rollback): lock, the work
// (with a journal on the target while it runs, so an interrupted one is
// converged, abandoned restore copies included), unlock (also after a
// failure). req needs Config, Resolver, Who and ID.
func PrepareLocked(req Request, name, description string, work func(ctx context.Context, h *remote.Host) error) (*Deployment, error) {
	d := newDeployment(req)
	tr := d.primary()
	d.targets = d.targets[:1]
	lock := d.lockStep(tr, "connect and take the deploy lock")
	g, err := pipelines.New(lock,
		pipelines.Step{Name: name, Needs: []string{lock.Name}, Timeout: time.Hour, Description: description,
			Run: func(ctx context.Context) error {
				st, err := d.loadState(ctx, tr)
				if err != nil {
					return err
				}
				st.InProgress = &Journal{ID: d.req.ID, Phase: name, Started: time.Now().UTC(), Undo: []Undo{}}
				if err := SaveState(tr.host, tr.layout, st); err != nil {
					return err
				}
				err = work(ctx, tr.host)
				st.InProgress = nil
				if serr := SaveState(tr.host, tr.layout, st); serr != nil {
					return errors.Join(err, serr)
				}
				if err == nil {
					tr.mu.Lock()
					tr.completed = true
					tr.mu.Unlock()
				}
				return err
			}},
		d.unlockStep(tr, name),
	)
	if err != nil {
		return nil, err
	}
	d.graph = g
	return d, nil
}

// switchBackWorker puts a worker-only target back on its previous
// release: its worker started again (it was stopped by the deploy), the
// current one stopped, the history switched (journaled first).
func (d *Deployment) switchBackWorker(ctx context.Context, tr *targetRun, st *State, cur Release, hasCur bool, prev Release) error {
	h, l := tr.host, tr.layout
	if err := d.journalSwitchBack(tr, st, prev, cur, func(history Undo) []Undo {
		if hasCur {
			return []Undo{history, {Kind: UndoStart, Container: cur.Container}}
		}
		return []Undo{history}
	}); err != nil {
		return err
	}
	if _, err := ensureRunning(ctx, h, tr.docker, prev.Container); err != nil {
		return errors.Join(err, d.undoEnv(tr).replay(context.WithoutCancel(ctx), nil))
	}
	if hasCur {
		if _, err := h.Run(ctx, tr.docker.Stop(cur.Container, 30)...); err != nil {
			return errors.Join(fmt.Errorf("stopping the worker of %s: %w", cur.ID, err), d.undoEnv(tr).replay(context.WithoutCancel(ctx), nil))
		}
	}
	st.InProgress = nil
	if err := SaveState(h, l, st); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.previous = &cur
	tr.release, tr.image, tr.container = prev.ID, prev.Image, prev.Container
	tr.mu.Unlock()
	return nil
}

// journalSwitchBack records how to undo a switch back (undo gets the
// entry that puts the history back, and places it among the others),
// makes prev current and cur previous, and saves state.json: write-ahead,
// before anything on the host changes.
func (d *Deployment) journalSwitchBack(tr *targetRun, st *State, prev, cur Release, undo func(history Undo) []Undo) error {
	history := Undo{Kind: UndoHistory, History: append([]Release(nil), st.Releases...)}
	st.InProgress = &Journal{ID: d.req.ID, Phase: StepSwitchBack, Started: time.Now().UTC(), Undo: undo(history)}
	for i := range st.Releases {
		switch st.Releases[i].ID {
		case prev.ID:
			st.Releases[i].Status = StatusCurrent
		case cur.ID:
			st.Releases[i].Status = StatusPrevious
		}
	}
	return SaveState(tr.host, tr.layout, st)
}
