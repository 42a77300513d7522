package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// StepHold is the once-per-run step of a run with a Hold.
const StepHold = "hold"

// Hold is a change to something both releases depend on (a rollback's
// database swap) that neither may serve across: the serving release must
// not see it made, the new one must not start before it. The run puts
// every target's site into a maintenance hold (nginx answers 503 with
// Retry-After; ACME tokens still served), makes the change, starts and
// health-gates the new backend, and the switch ends the hold, so the hold
// lasts the change, the new backend's start and its gate (polled every
// 100 ms at most during a hold), and two nginx reloads.
type Hold struct {
	// Description says what Do changes (the plan, the step).
	Description string
	// Token is journaled before Do (write-ahead); Hooks.Unhold puts the
	// change back from it when the run is undone.
	Token func() string
	// Do makes the change, on the primary target's connection.
	Do func(ctx context.Context, h *remote.Host) error
}

// holdInterval bounds the health gate's interval during a hold.
const holdInterval = 100 * time.Millisecond

// holdRelease is the release header the hold's site answers with.
func holdRelease(id string) string { return id + "-hold" }

// holdSite is the hold's site file, in the new release's folder.
func holdSite(l Layout, id string) string { return path.Join(l.Release(id), "hold.nginx.conf") }

// holdSiteCmds point nginx's site at the hold, check and reload: the
// `current` link stays on the serving release (nothing else is switched).
func holdSiteCmds(l Layout, n Nginx, id string) [][]string {
	return append(remote.SymlinkCmds(holdSite(l, id), l.SitePath), n.Test(), n.Reload())
}

// holding says whether this run holds: its hold began and has not ended.
func (d *Deployment) holding() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.holdFrom.IsZero() && d.holdTo.IsZero()
}

// siteBack is told when a revert put a target's site back on release to
// (nil: the app had no site before): it waits until nginx serves it and
// the workers from before the reload are gone (what the revert removes
// next, the failed backend, then serves nobody), and a hold ends there.
func (d *Deployment) siteBack(ctx context.Context, tr *targetRun, to *Release) {
	if to != nil {
		if err := d.confirmServing(ctx, tr, "http://"+nginxAddr(tr.cfg.Nginx), releaseProbe, to.ID); err != nil {
			d.log.Warn("after putting the site back", "target", tr.cfg.Name, "release", to.ID, "error", err)
		}
	}
	if d.holding() {
		d.holdEnded(tr)
	}
}

// holdEnded is called when a target's site leaves the hold (its switch,
// or a revert's site undo): the hold lasts until the last target left it.
func (d *Deployment) holdEnded(tr *targetRun) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.holdFrom.IsZero() || !d.holdTo.IsZero() {
		return
	}
	if d.holdLeft == nil {
		d.holdLeft = map[*targetRun]bool{}
	}
	d.holdLeft[tr] = true
	for _, t := range d.targets {
		if t.noop == "" && !d.holdLeft[t] {
			return
		}
	}
	d.holdTo = time.Now()
}

// HoldLength is how long the run held (nginx answering 503), from the
// first target's reload signal to the last target's way out confirmed
// (its switch, or a revert's site undo); 0 when it did not hold, or the
// hold did not end.
func (d *Deployment) HoldLength() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.holdFrom.IsZero() || d.holdTo.IsZero() {
		return 0
	}
	return d.holdTo.Sub(d.holdFrom)
}

// hold puts every target into the hold, then makes the change. The
// primary's journal records the change's undo token before Do.
func (d *Deployment) hold(ctx context.Context) error {
	hk := d.req.Hooks.Hold
	if d.req.Hooks.Unhold == nil {
		return errors.New("a hold needs Hooks.Unhold (its undo)")
	}
	if err := d.holdSites(ctx); err != nil {
		return err
	}
	first := d.primary()
	if err := first.record(StepHold, Undo{Kind: UndoUnhold, Token: hk.Token()}); err != nil {
		return err
	}
	return hk.Do(ctx, first.host)
}

// holdSites points every target's site at the hold. Each target's journal
// records first that its site goes back to the serving release (the one
// before this run: a revert's replay, or the next run's converge, ends
// the hold there).
func (d *Deployment) holdSites(ctx context.Context) error {
	for _, tr := range d.targets {
		if tr.noop != "" {
			continue
		}
		// The maintenance page, with a retry in a second: the hold lasts
		// the swap, the new backend's start and its gate.
		if err := writeMaintenancePage(d.req.Config, tr.host, tr.layout, "The service is switching to another release; it is back in a moment."); err != nil {
			return err
		}
		data, _ := d.siteData(tr)
		data.Release, data.Hold = holdRelease(d.req.ID), true
		data.Maintenance = &MaintenancePage{Dir: maintenancePages(tr.layout), RetryAfter: 1}
		data.Upstream = "" // nothing is proxied: the database under both releases is changing
		site, err := RenderSite(data)
		if err != nil {
			return err
		}
		if err := tr.host.MkdirAll(data.Webroot); err != nil {
			return err
		}
		if err := tr.host.WriteFile(holdSite(tr.layout, d.req.ID), site, 0o644); err != nil {
			return err
		}
		tr.nginxPidFile(ctx) // before the clock starts
		if err := tr.record(StepHold, Undo{Kind: UndoSite, To: tr.previous}); err != nil {
			return err
		}
		// The hold is timed from before the reload (nginx may answer 503
		// from the moment it is signalled) to its end confirmed.
		d.mu.Lock()
		if d.holdFrom.IsZero() {
			d.holdFrom = time.Now()
		}
		d.mu.Unlock()
		if _, err := tr.host.RunScript(ctx, nil, holdSiteCmds(tr.layout, tr.nginxCmds(), d.req.ID)...); err != nil {
			return fmt.Errorf("%s: putting the site into the maintenance hold: %w", tr.cfg.Name, err)
		}
		// Old workers finish the requests they have (to the backend that
		// served) before the change is made.
		if err := d.confirmServing(ctx, tr, "http://"+nginxAddr(tr.cfg.Nginx), releaseProbe, holdRelease(d.req.ID)); err != nil {
			return fmt.Errorf("%s: the maintenance hold: %w", tr.cfg.Name, err)
		}
	}
	return nil
}

// StepSwapDatabase is the undo of a failed run whose migrations changed
// the schema, before its reverts.
const StepSwapDatabase = "swap-database"

// swapDatabase runs before the reverts of a failed run that may have
// changed the schema: the pre-deploy snapshot is restored into a copy
// while the failed release still serves (its code and schema agree), then
// every target holds, the copy is swapped in, and the reverts switch back
// to the previous releases, which ends the hold. So once the hold begins
// the previous code never serves on the new schema (before it, it may, as
// before the switch: the site's fallback hands it requests the failed
// backend refuses), and no backend loses its database while it serves. When this cannot be done (the copy fails), the
// restore-database step after the reverts restores as before.
func (d *Deployment) swapDatabase(ctx context.Context) error {
	if d.completed() {
		return pipelines.Skip("the deploy completed")
	}
	if !d.schemaTouched() {
		return pipelines.Skip("neither the migrations nor the new backend started")
	}
	p := d.primary()
	j := ownJournal(p.state, d.req.ID)
	if j == nil {
		return pipelines.Skip("nothing was changed")
	}
	i := slices.IndexFunc(j.Undo, func(u Undo) bool { return u.Kind == UndoDatabase })
	if i < 0 {
		return pipelines.Skip("no pre-deploy snapshot recorded")
	}
	swap, abandon, err := d.req.Hooks.StageDatabaseUndo(ctx, p.host, j.Undo[i].Snapshot)
	if _, skipped := pipelines.IsSkip(err); skipped {
		d.markRestoredEarly()
		return err // the schema is unchanged: nothing to restore
	}
	if err != nil {
		return fmt.Errorf("%w (the restore-database step tries again after the switch back)", err)
	}
	defer abandon()
	if err := d.holdSites(ctx); err != nil {
		return fmt.Errorf("%w (the reverts end the hold; the restore-database step restores after them)", err)
	}
	if err := swap(ctx); err != nil {
		return fmt.Errorf("%w (the reverts end the hold; the restore-database step restores after them)", err)
	}
	d.markRestoredEarly()
	return nil
}

func (d *Deployment) markRestoredEarly() {
	d.mu.Lock()
	d.earlyRestore = true
	d.mu.Unlock()
}

func (d *Deployment) restoredEarly() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.earlyRestore
}
