package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// revert undoes a deploy that did not complete on this target: its journal
// replayed in reverse (the database entry waits for the restore-database
// step, once every target serves its previous release). A failed undo is
// reported, never hidden; the journal keeps the rest for the next run, and
// the dead man's switch is left to put the previous site back.
func (d *Deployment) revert(ctx context.Context, tr *targetRun) error {
	tr.mu.Lock()
	done, locked := tr.completed, tr.locked
	tr.mu.Unlock()
	if done {
		return pipelines.Skip("the deploy completed")
	}
	if !locked || tr.host == nil {
		return pipelines.Skip("nothing was changed (the lock was never taken)")
	}
	j := ownJournal(tr.state, d.req.ID)
	if j == nil {
		return errors.Join(tr.lease.end(), pipelines.Skip("nothing was changed on this target"))
	}
	switched := slices.ContainsFunc(j.Undo, func(u Undo) bool { return u.Kind == UndoSite })
	err := d.undoEnv(tr).replay(ctx, func(u Undo) bool { return u.Kind == UndoDatabase })
	if err != nil {
		tr.lease.fire()
		tr.mu.Lock()
		tr.revert, tr.revertErr = RevertIncomplete, err.Error()
		tr.mu.Unlock()
		return fmt.Errorf("revert: %w", err)
	}
	kind := RevertRemoved
	if switched {
		kind = RevertSwitchedBack
	}
	tr.mu.Lock()
	tr.revert = kind
	tr.mu.Unlock()
	return tr.lease.end()
}

// ownJournal is the state's journal when it is this run's.
func ownJournal(st *State, id string) *Journal {
	if st == nil || st.InProgress == nil || st.InProgress.ID != id {
		return nil
	}
	return st.InProgress
}

// restoreDatabase is the restore-database step: once every target is back
// on its previous release, the database goes back to the pre-deploy
// snapshot when the migrations ran (hook decides whether the schema
// changed). The journal's database entry goes whatever the result: a
// failed restore is reported with the command that finishes it; only a run
// killed inside the restore leaves the entry for the next run's converge.
func (d *Deployment) restoreDatabase(ctx context.Context, hook func(context.Context, *remote.Host, string) error) error {
	if d.completed() {
		return pipelines.Skip("the deploy completed")
	}
	p := d.primary()
	// The database's undo entry goes unreplayed when nothing ran that
	// could change the schema, or swap-database did it before the reverts.
	skip := ""
	switch {
	case !d.schemaTouched():
		skip = "neither the migrations nor the new backend started"
	case d.restoredEarly():
		skip = "done by " + StepSwapDatabase + " before the switch back"
	}
	if skip != "" {
		if j := ownJournal(p.state, d.req.ID); j != nil && len(j.Undo) == 1 && j.Undo[0].Kind == UndoDatabase {
			p.state.InProgress = nil
			if err := SaveState(p.host, p.layout, p.state); err != nil {
				return err
			}
		}
		return pipelines.Skip("%s", skip)
	}
	snapshot := ""
	j := ownJournal(p.state, d.req.ID)
	if j != nil {
		i := slices.IndexFunc(j.Undo, func(u Undo) bool { return u.Kind == UndoDatabase })
		if len(j.Undo) > 1 || i < 0 && len(j.Undo) > 0 {
			return fmt.Errorf("the database was not restored: the revert of %s is incomplete (the new code may still serve); the next run converges both", p.cfg.Name)
		}
		if i >= 0 {
			snapshot = j.Undo[i].Snapshot
		}
	}
	err := hook(ctx, p.host, snapshot)
	if j != nil {
		p.state.InProgress = nil
		err = errors.Join(err, SaveState(p.host, p.layout, p.state))
	}
	return err
}
