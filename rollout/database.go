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
	dr := r.req.Deploy
	db := dr.Config.Database
	if snapshot == "" {
		err := errors.New("the migrations ran, but there is no pre-deploy snapshot of the database to restore")
		r.setDatabase(DatabaseNotRestored, err.Error())
		return err
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
		return err
	}
	pw, err := dr.Resolver.Resolve(db.Password)
	if err != nil {
		return fmt.Errorf("database.password: %w", err)
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
		return pipelines.Skip("%s", dbschema.Change(pre.Database.Schema, now))
	}
	why := "the release changed it: " + dbschema.Change(pre.Database.Schema, now)
	switch {
	case ierr != nil:
		why = fmt.Sprintf("its schema cannot be read (%v), so it is treated as changed", ierr)
	case pre.Database.Schema == nil:
		why = "the snapshot records no schema (taken by an older lawsker-deploy), so it is treated as changed"
	}
	adminPW, err := dr.Resolver.Resolve(db.AdminPassword)
	if err == nil && db.AdminUser == "" {
		err = errors.New("database.admin_user is not set")
	}
	var res *snapshots.RestoreResult
	var id age.Identity
	if err == nil {
		id, err = snapshots.Identity(dr.Config, dr.Resolver)
	}
	if err == nil {
		res, err = snapshots.RestoreDatabase(ctx, h, *db, adminPW, store, pre, snapshots.RestoreOptions{WorkDir: deploy.PrimaryLayout(dr.Config).Base, Jobs: 2, Identity: id})
	}
	if err != nil {
		r.setDatabase(DatabaseNotRestored, fmt.Sprintf("%s; restoring failed: %v; restore with `rollback --snapshot %s --components database`", why, err, pre.ID))
		return fmt.Errorf("restoring the database from %s: %w", pre.ID, err)
	}
	r.setDatabase(DatabaseRestored, fmt.Sprintf("from %s (%s; dump %s); the replaced database is kept as %s", pre.ID, why, res.Transfer, res.Replaced))
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
