package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"

	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// DatabaseStatus is what a rollback did to the database.
type DatabaseStatus string

// Database statuses.
const (
	// DatabaseUntouched: nothing that could change the schema started.
	DatabaseUntouched DatabaseStatus = "unchanged"
	// DatabaseKept: the migrations ran and left the schema as it was.
	DatabaseKept DatabaseStatus = "kept"
	// DatabaseRestored: restored from the pre-deploy (or the chosen)
	// snapshot; the replaced database is kept.
	DatabaseRestored DatabaseStatus = "restored"
	// DatabaseNotRestored: it should have been and was not; Detail says
	// why and what to run.
	DatabaseNotRestored DatabaseStatus = "not_restored"
)

// DatabaseOutcome is the database's part of a rollback: a status to decide
// on, a detail for people.
type DatabaseOutcome struct {
	Status DatabaseStatus `json:"status"`
	Detail string         `json:"detail"`
}

// String reads as the report's database line.
func (d *DatabaseOutcome) String() string {
	if d == nil {
		return ""
	}
	switch d.Status {
	case DatabaseUntouched:
		return "unchanged: " + d.Detail
	case DatabaseKept:
		return "kept: " + d.Detail
	case DatabaseRestored:
		return "restored " + d.Detail
	}
	return "NOT restored: " + d.Detail
}

// restoreDatabase restores the database from the pre-deploy snapshot when
// the undone release changed its schema (its fingerprint differs from the
// snapshot's, or cannot be read), whatever ran the migrations (the deploy's own
// restore-database step, or the next run's converge of a killed one).
func (r *Rollout) restoreDatabase(ctx context.Context, h *remote.Host, snapshot string) error {
	swap, abandon, err := r.stageUndo(ctx, h, snapshot)
	if err != nil {
		return err
	}
	defer abandon()
	return swap(ctx)
}

// stageUndo decides whether the undone release changed the schema and,
// when it did, restores the pre-deploy snapshot into a copy beside the
// database; swap puts it in place, abandon drops a copy not swapped in
// (call abandon in every case). An unchanged schema is a
// pipelines.Skip (kept); every outcome is reported.
func (r *Rollout) stageUndo(ctx context.Context, h *remote.Host, snapshot string) (swap func(context.Context) error, abandon func(), err error) {
	dr := r.req.Deploy
	db := dr.Config.Database
	if snapshot == "" {
		err := errors.New("the migrations ran, but there is no pre-deploy snapshot of the database to restore")
		r.setDatabase(DatabaseNotRestored, err.Error())
		return nil, nil, err
	}
	r.mu.Lock()
	pre := r.pre
	r.mu.Unlock()
	store, err := r.openStore(ctx, h)
	if err == nil && (pre == nil || pre.ID != snapshot) {
		pre, err = snapshots.Load(ctx, store, snapshot) // converging a killed run's restore
	}
	if err == nil && pre.Database == nil {
		err = fmt.Errorf("snapshot %s holds no database dump", snapshot)
	}
	if err != nil {
		r.setDatabase(DatabaseNotRestored, fmt.Sprintf("the pre-deploy snapshot %s cannot be read: %v", snapshot, err))
		return nil, nil, err
	}
	pw, err := dr.Resolver.Resolve(db.Password)
	if err != nil {
		return nil, nil, fmt.Errorf("database.password: %w", err)
	}
	// The schema decides, as the catalog shows it: unchanged is kept; a
	// schema that cannot be read counts as changed (the safe side).
	var now *dbschema.Schema
	info, ierr := snapshots.Inspect(ctx, h, *db, pw)
	if ierr == nil {
		now = info.Schema
	}
	if dbschema.Same(pre.Database.Schema, now) {
		r.setDatabase(DatabaseKept, "the release left the "+dbschema.Change(pre.Database.Schema, now))
		return nil, nil, pipelines.Skip("%s", dbschema.Change(pre.Database.Schema, now))
	}
	why := "the release changed it: " + dbschema.Change(pre.Database.Schema, now)
	switch {
	case ierr != nil:
		why = fmt.Sprintf("its schema cannot be read (%v), so it is treated as changed", ierr)
	case pre.Database.Schema == nil:
		why = "the snapshot records no schema (taken by an older lawsker-deploy), so it is treated as changed"
	}
	failed := func(err error) error {
		r.setDatabase(DatabaseNotRestored, fmt.Sprintf("%s; restoring failed: %v; restore with `rollback --snapshot %s --components database`", why, err, pre.ID))
		return fmt.Errorf("restoring the database from %s: %w", pre.ID, err)
	}
	adminPW, err := dr.Resolver.Resolve(db.AdminPassword)
	if err == nil && db.AdminUser == "" {
		err = errors.New("database.admin_user is not set")
	}
	var id age.Identity
	if err == nil {
		id, err = snapshots.Identity(dr.Config, dr.Resolver)
	}
	var st *snapshots.StagedRestore
	if err == nil {
		st, err = snapshots.StageRestore(ctx, h, *db, adminPW, store, pre, snapshots.RestoreOptions{WorkDir: deploy.PrimaryLayout(dr.Config).Base, Jobs: 2, Identity: id})
	}
	if err != nil {
		return nil, nil, failed(err)
	}
	return func(ctx context.Context) error {
		res, err := st.Swap(ctx)
		if err != nil {
			return failed(err)
		}
		r.setDatabase(DatabaseRestored, fmt.Sprintf("from %s (%s; dump %s); the replaced database is kept as %s", pre.ID, why, res.Transfer, res.Replaced))
		return nil
	}, st.Close, nil
}

// unhold puts back the database a rollback's hold swapped away (token: the
// name it was kept under), when the rollback was undone before it served.
func (r *Rollout) unhold(ctx context.Context, h *remote.Host, token string) error {
	dr := r.req.Deploy
	db := dr.Config.Database
	pw, err := dr.Resolver.Resolve(db.AdminPassword)
	if err != nil {
		return fmt.Errorf("database.admin_password: %w", err)
	}
	if err := snapshots.Unswap(ctx, h, *db, pw, token); err != nil {
		return err
	}
	r.setDatabase(DatabaseUntouched, "the rollback was undone before it served: the database it replaced ("+token+") is back under its name")
	return nil
}

// afterConverge drops the restore copies an interrupted run left (under
// the lock no restore runs, so every copy is abandoned).
func (r *Rollout) afterConverge(ctx context.Context, h *remote.Host) (string, error) {
	dr := r.req.Deploy
	db := dr.Config.Database
	if db == nil || db.AdminUser == "" {
		return "", nil
	}
	pw, err := dr.Resolver.Resolve(db.AdminPassword)
	if err != nil {
		return "", fmt.Errorf("database.admin_password: %w", err)
	}
	dropped, err := snapshots.DropRestoreCopies(ctx, h, *db, pw)
	if err != nil {
		return "", fmt.Errorf("dropping abandoned restore copies: %w", err)
	}
	if len(dropped) == 0 {
		return "", nil
	}
	return "dropped the abandoned restore copies " + strings.Join(dropped, ", "), nil
}

func (r *Rollout) setDatabase(status DatabaseStatus, detail string) {
	r.mu.Lock()
	r.out.Database = &DatabaseOutcome{Status: status, Detail: detail}
	r.mu.Unlock()
}
