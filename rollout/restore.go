package rollout

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"filippo.io/age"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// RestoreRequest is a rollback to a snapshot.
type RestoreRequest struct {
	Config   *config.Config
	Resolver *config.Resolver
	Store    snapshots.Store
	Manifest *snapshots.Manifest
	Plan     *RestorePlan
	ID       string // the rollback's id (also the new release's)
	Who      string
	WorkDir  string // local scratch space for the frontend
	Logger   *slog.Logger
	Roots    *x509.CertPool // verifies TLS in the suite (nil: the system's)
}

// Restore is a prepared rollback to a snapshot.
type Restore struct {
	*Rollout
	plan     *RestorePlan
	manifest *snapshots.Manifest
	dbResult *snapshots.RestoreResult
	staged   *snapshots.StagedRestore // restored into a copy, swapped in under the hold
}

// PrepareRestore checks every artifact to restore against its manifest
// (before anything changes), unpacks the frontend, and builds the graph: a
// deploy of the snapshot's image and frontend (with its configuration when
// asked) whose first change is the database restore, then verification.
// Only the database: the restore under the lock, then verification.
func PrepareRestore(ctx context.Context, req RestoreRequest) (*Restore, error) {
	m, p := req.Manifest, req.Plan
	on := func(c snapshots.Component) bool { return slices.Contains(p.Components, c) }
	for _, c := range p.Components {
		if a, ok := m.Artifacts[c]; ok && c != snapshots.ComponentFrontend { // the frontend is checked while unpacking
			if err := snapshots.Check(ctx, req.Store, &snapshots.Manifest{ID: m.ID, Artifacts: map[snapshots.Component]snapshots.Artifact{c: a}}); err != nil {
				return nil, fmt.Errorf("nothing was changed: %w", err)
			}
		}
	}
	cfg := req.Config
	if on(snapshots.ComponentConfig) {
		snap, err := snapshotConfig(ctx, req.Store, m)
		if err != nil {
			return nil, err
		}
		merged := *cfg
		merged.Backend, merged.Frontend, merged.Domains = snap.Backend, snap.Frontend, snap.Domains
		cfg = &merged
	}
	r := &Restore{plan: p, manifest: m}
	dr := deploy.Request{Config: cfg, Resolver: req.Resolver, Who: req.Who, ID: req.ID, NoSnapshot: true, Force: true, Logger: req.Logger, NoCanary: true,
		Message: "rollback to " + m.ID}
	// A rollback whose verification fails is reported, not reverted: the
	// release it replaced is the one that was rolled back from.
	ro := &Rollout{req: Request{Deploy: dr, Roots: req.Roots}, store: req.Store, keepOnTrigger: true}
	r.Rollout = ro
	if on(snapshots.ComponentDatabase) {
		if cfg.Database == nil {
			return nil, errors.New("--components database: the configuration has no database section")
		}
		if m.Database == nil || m.Database.Name != cfg.Database.Name {
			return nil, fmt.Errorf("snapshot %s holds a dump of database %q, not %q: nothing was changed", m.ID, dbName(m), cfg.Database.Name)
		}
		// Restoring creates a fresh database and swaps it in: the admin
		// role does it. Said before the lock, not in the middle.
		_, err := req.Resolver.Resolve(cfg.Database.AdminPassword)
		if err == nil && cfg.Database.AdminUser == "" {
			err = errors.New("database.admin_user is not set")
		}
		if err != nil {
			return nil, fmt.Errorf("nothing was changed: restoring the database needs its admin role (database.admin_user and database.admin_password): %w; set them, or roll back without the database (--components backend,frontend)", err)
		}
	}
	restoreFolders := func(ctx context.Context, h *remote.Host) error {
		var id age.Identity
		var err error
		for _, c := range snapshots.FolderComponents {
			if !on(c) {
				continue
			}
			if id == nil {
				if id, err = snapshots.Identity(cfg, req.Resolver); err != nil {
					return err
				}
			}
			if err := snapshots.RestoreFolder(ctx, h, req.Store, m, c, deploy.PrimaryLayout(cfg).Base, id); err != nil {
				return err
			}
		}
		return nil
	}
	restoreDB := func(ctx context.Context, h *remote.Host, _ *deploy.Release) (string, error) {
		if !on(snapshots.ComponentDatabase) {
			return "", restoreFolders(ctx, h)
		}
		db := cfg.Database
		pw, err := req.Resolver.Resolve(db.AdminPassword)
		if err != nil {
			return "", fmt.Errorf("database.admin_password: %w", err)
		}
		id, err := snapshots.Identity(cfg, req.Resolver)
		if err != nil {
			return "", err
		}
		opts := snapshots.RestoreOptions{WorkDir: deploy.PrimaryLayout(cfg).Base, Jobs: 2, Identity: id}
		if on(snapshots.ComponentBackend) {
			// The slow part while the serving release serves; the swap
			// waits for the hold (swapIn).
			st, err := snapshots.StageRestore(ctx, h, *db, pw, req.Store, m, opts)
			if err != nil {
				return "", err
			}
			r.staged = st
			return "", restoreFolders(ctx, h)
		}
		res, err := snapshots.RestoreDatabase(ctx, h, *db, pw, req.Store, m, opts)
		if err != nil {
			return "", err
		}
		r.restored(res)
		return "", restoreFolders(ctx, h)
	}
	if !on(snapshots.ComponentBackend) {
		g, err := r.databaseOnly(cfg, req, restoreDB)
		if err != nil {
			return nil, err
		}
		ro.d = g
		return r, nil
	}
	img := m.Images[snapshots.ComponentBackend]
	if err := deploy.CheckImage(cfg, img); err != nil {
		return nil, fmt.Errorf("%w (the snapshot's image; --components config restores the configuration it was deployed with)", err)
	}
	dr.Image = img
	if cfg.Frontend != nil {
		if !on(snapshots.ComponentFrontend) {
			return nil, errors.New("the configuration has a frontend, and the snapshot has none to restore")
		}
		dir := filepath.Join(req.WorkDir, "frontend-"+m.ID)
		if err := unpackFrontend(ctx, req.Store, m.ID, m.Artifacts[snapshots.ComponentFrontend], dir); err != nil {
			return nil, err
		}
		dr.FrontendDir = dir
	}
	dr.Hooks = r.convergeHooks()
	dr.Hooks.Verify = ro.verify
	if on(snapshots.ComponentDatabase) || on(snapshots.ComponentTLS) || on(snapshots.ComponentMonitoring) {
		dr.Hooks.BeforeChange = restoreDB
	}
	if on(snapshots.ComponentDatabase) {
		dr.NoMigrate = true // the restored schema is the one the snapshot's release ran on
		// Neither code runs on the other's schema: the serving release
		// serves until the hold, the snapshot's starts after the swap.
		dr.Hooks.Hold = &deploy.Hold{Description: "swap the restored database in (the serving one is kept beside it)",
			Token: func() string { return r.staged.Replaced }, Do: r.swapIn}
	}
	ro.req.Deploy = dr
	ro.req.Roots = req.Roots
	d, err := deploy.Prepare(dr)
	if err != nil {
		return nil, err
	}
	ro.d = d
	return r, nil
}

// convergeHooks let a rollback converge an interrupted run, its database
// restore and abandoned restore copies included.
func (r *Restore) convergeHooks() deploy.Hooks {
	h := deploy.Hooks{ConvergeDatabase: r.restoreDatabase, AfterConverge: r.afterConverge}
	if r.req.Deploy.Config.Database != nil {
		h.Unhold = r.unhold
	}
	return h
}

// swapIn is the hold's change: the staged copy takes the database's name.
func (r *Restore) swapIn(ctx context.Context, _ *remote.Host) error {
	if r.staged == nil {
		return errors.New("the database was not restored into a copy before the hold")
	}
	res, err := r.staged.Swap(ctx)
	if err != nil {
		return err
	}
	r.restored(res)
	return nil
}

func (r *Restore) restored(res *snapshots.RestoreResult) {
	r.dbResult = res
	r.setDatabase(DatabaseRestored, fmt.Sprintf("from %s in %s (dump %s); the replaced database is kept as %s", r.manifest.ID, res.Duration.Round(time.Millisecond), res.Transfer, res.Replaced))
}

// Close ends the connections, dropping a restored copy that was never
// swapped in.
func (r *Restore) Close() {
	if r.staged != nil {
		r.staged.Close()
	}
	r.Rollout.Close()
}

func dbName(m *snapshots.Manifest) string {
	if m.Database == nil {
		return ""
	}
	return m.Database.Name
}

// databaseOnly is the graph of a rollback without the release (database,
// tls, monitoring): lock, restore, reloads, verification, unlock.
func (r *Restore) databaseOnly(cfg *config.Config, req RestoreRequest, restoreDB func(context.Context, *remote.Host, *deploy.Release) (string, error)) (*deploy.Deployment, error) {
	return deploy.PrepareLocked(deploy.Request{Config: cfg, Resolver: req.Resolver, Who: req.Who, ID: req.ID, Logger: req.Logger, Message: "rollback to " + req.Manifest.ID,
		Hooks: r.convergeHooks()},
		"restore-database", "restore the database into a fresh one and swap it in",
		func(ctx context.Context, h *remote.Host) error {
			if _, err := restoreDB(ctx, h, nil); err != nil {
				return err
			}
			t := cfg.Primary()
			if slices.Contains(req.Plan.Components, snapshots.ComponentTLS) {
				n := deploy.NginxFor(t)
				if _, err := h.Run(ctx, n.Test()...); err != nil {
					return fmt.Errorf("nginx -t with the restored certificates: %w", err)
				}
				if _, err := h.Run(ctx, n.Reload()...); err != nil {
					return err
				}
			}
			if slices.Contains(req.Plan.Components, snapshots.ComponentMonitoring) {
				if err := monitoring.Reload(ctx, h, cfg); err != nil {
					return fmt.Errorf("reloading Prometheus with the restored configuration: %w", err)
				}
				// The log store runs with the settings the snapshot holds.
				l := deploy.NewLayout(cfg, t)
				// A store that cannot start is a warning, as in a deploy: the
				// app's output stays in docker logs.
				if _, err := monitoring.RestoreLogStore(ctx, monitoring.Target{Host: h, Base: l.Base, App: cfg.App, Name: l.Name, Docker: deploy.Docker{Host: t.Docker.Host}}); err != nil {
					r.warn("the log store with the restored settings is not running on %s (the rollback went on; the backend's output is in docker logs): %v", t.Name, err)
				}
			}
			return r.verify(ctx, h)
		})
}

// Finish reads the run: what was restored, the verification, and why it
// failed when it did.
func (r *Restore) Finish(res *pipelines.Result) (Outcome, error) {
	out, err := r.Rollout.Finish(res)
	out.RolledBack = nil
	if out.Trigger != nil && out.Trigger.Kind == TriggerDeployFailure {
		out.Trigger = nil // a failed rollback is no rollback trigger; its error says what failed
	}
	if err == nil {
		out.RolledBack = r.plan.Components
	} else if r.dbResult != nil && out.Database != nil && out.Database.Status == DatabaseRestored {
		out.RolledBack = []snapshots.Component{snapshots.ComponentDatabase}
	}
	return out, err
}
