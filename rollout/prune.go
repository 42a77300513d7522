package rollout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// PruneResult is what retention decided and did.
type PruneResult struct {
	Decisions []snapshots.Decision `json:"decisions"`
	Deleted   []string             `json:"deleted,omitempty"`
	// RestoreCopies are the fresh copies of restores that never finished
	// (killed), dropped: every one when no run holds the lock (a restore
	// only runs under it), those older than an hour while one does.
	RestoreCopies []string `json:"restore_copies,omitempty"`
	// Databases are the replaced databases
	// dropped, older than snapshots.retention_days.
	Databases []string `json:"databases,omitempty"`
}

// Prune applies retention: snapshots beyond keep_last and older than
// retention_days go, except those of the current and previous releases;
// replaced databases older than retention_days are dropped (when
// database.admin_user is set). With dryRun nothing is deleted.
func Prune(ctx context.Context, cfg *config.Config, res *config.Resolver, h *remote.Host, store snapshots.Store, now time.Time, dryRun bool) (*PruneResult, error) {
	ms, errs := snapshots.List(ctx, store)
	if len(errs) > 0 {
		return nil, fmt.Errorf("unreadable snapshots, nothing pruned: %w", errors.Join(errs...))
	}
	st, err := deploy.LoadState(h, deploy.PrimaryLayout(cfg))
	if err != nil {
		return nil, fmt.Errorf("reading the target's releases (needed to protect their snapshots): %w", err)
	}
	out := &PruneResult{Decisions: snapshots.Retention(ms, cfg.Snapshots.KeepLast, cfg.Snapshots.RetentionDays, now, Protected(st))}
	for _, d := range out.Decisions {
		if d.Keep {
			continue
		}
		if !dryRun {
			if err := snapshots.Delete(ctx, store, d.Manifest.ID); err != nil {
				return out, err
			}
		}
		out.Deleted = append(out.Deleted, d.Manifest.ID)
	}
	if db := cfg.Database; db != nil && db.AdminUser != "" {
		pw, err := res.Resolve(db.AdminPassword)
		if err != nil {
			return out, fmt.Errorf("database.admin_password: %w", err)
		}
		keepSince := now.Add(-time.Duration(cfg.Snapshots.RetentionDays) * 24 * time.Hour)
		// A restore runs under the deploy lock: with the lock free, every
		// restore copy is abandoned; while it is held, only old ones.
		copiesBefore := now.Add(-time.Hour)
		if _, err := deploy.ReadLock(h, deploy.PrimaryLayout(cfg)); errors.Is(err, os.ErrNotExist) {
			copiesBefore = now.Add(time.Minute)
		}
		dropped, err := snapshots.PruneDatabases(ctx, h, *db, pw, keepSince, copiesBefore, dryRun)
		for _, n := range dropped {
			if strings.HasPrefix(n, db.Name+"_restore_") {
				out.RestoreCopies = append(out.RestoreCopies, n)
			} else {
				out.Databases = append(out.Databases, n)
			}
		}
		if err != nil {
			return out, fmt.Errorf("replaced databases: %w", err)
		}
	}
	return out, nil
}

// Protected maps the current and previous releases to their images.
func Protected(st *deploy.State) map[string]string {
	p := map[string]string{}
	if r, ok := st.Current(); ok {
		p["current"] = r.Image
	}
	if r, ok := st.Previous(); ok {
		p["previous"] = r.Image
	}
	return p
}
