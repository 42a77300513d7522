// Package rollout is a whole release: the deploy graph (package deploy)
// with a pre-deploy snapshot before anything changes, the verification
// suite and a watch window once the release serves, a post-deploy snapshot
// when it passes, and the automatic rollback when a trigger fires: every
// target back on its previous release and, when the release's migrations
// changed the schema, the database restored from the pre-deploy snapshot.
package rollout

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// Request is one release.
type Request struct {
	Deploy deploy.Request
	// Roots verifies TLS in the suite (nil: the system's roots).
	Roots *x509.CertPool
	// Baseline to compare performance with; nil takes the newest
	// post-deploy snapshot's (the serving release's figures).
	Baseline checks.Baseline
}

// Trigger kinds: why a release was rolled back.
const (
	TriggerDeployFailure = "deploy_failure"
	TriggerHealth        = "health_check"
	TriggerErrorRate     = "error_rate"
	TriggerPerformance   = "performance_degradation"
	TriggerSecurity      = "security"
	TriggerFunctional    = "functional"
)

// Trigger says why a release was (or, with rollback.auto off, would have
// been) rolled back.
type Trigger struct {
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// Outcome is what the release did beyond the deploy graph's steps.
type Outcome struct {
	PreSnapshot  string        `json:"pre_snapshot,omitempty"`
	PostSnapshot string        `json:"post_snapshot,omitempty"`
	Verification *checks.Suite `json:"verification,omitempty"`
	Watch        *Watch        `json:"watch,omitempty"`
	Trigger      *Trigger      `json:"rollback_trigger,omitempty"`
	// RolledBack lists what was put back: backend, frontend, database.
	RolledBack []string `json:"rolled_back,omitempty"`
	// Database says what happened to the database on a rollback.
	Database *DatabaseOutcome `json:"database,omitempty"`
	Pruned   []string         `json:"pruned_snapshots,omitempty"`
	// Certificates is what the certificates step did (tls.enabled).
	Certificates []certs.Result `json:"certificates,omitempty"`
	Warnings     []string       `json:"warnings,omitempty"`
}

// Rollout is a prepared release.
type Rollout struct {
	req   Request
	d     *deploy.Deployment
	mu    sync.Mutex
	out   Outcome
	pre   *snapshots.Manifest
	store snapshots.Store
	kept  bool // verification passed or was overridden (auto off)
	// keepOnTrigger records a trigger without reverting (rollbacks).
	keepOnTrigger bool
}

// Prepare checks the request and builds the graph; nothing on any target
// is touched until it runs.
func Prepare(req Request) (*Rollout, error) {
	r := &Rollout{req: req}
	cfg := req.Deploy.Config
	h := deploy.PlanHooks(cfg, req.Deploy.NoSnapshot)
	// The plan's conditions decide which hooks exist; these do the work.
	h.Verify = r.verify
	if h.BeforeChange != nil {
		h.BeforeChange, h.AfterKeep = r.beforeChange, r.afterKeep
	}
	if h.RestoreDatabase != nil {
		h.RestoreDatabase = r.restoreDatabase
	}
	h.AfterConverge = r.afterConverge
	req.Deploy.Hooks = h
	r.req.Deploy.Hooks = h
	d, err := deploy.Prepare(req.Deploy)
	if err != nil {
		return nil, err
	}
	r.d = d
	return r, nil
}

// Graph is the DAG to run.
func (r *Rollout) Graph() *pipelines.Graph { return r.d.Graph() }

// Deployment is the deploy inside (its per-target outcomes).
func (r *Rollout) Deployment() *deploy.Deployment { return r.d }

// Close ends the SSH connections.
func (r *Rollout) Close() { r.d.Close() }

// Finish reads the graph's result into the outcome: a failed step that
// was not a verification trigger is the deploy_failure trigger. The error
// is the run's, or the verification's when rollback.auto kept a failing
// release.
func (r *Rollout) Finish(res *pipelines.Result) (Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.out
	out.Certificates = r.d.TLSResults()
	runErr := res.Err()
	if runErr != nil && out.Trigger == nil {
		out.Trigger = &Trigger{Kind: TriggerDeployFailure, Reason: firstFailure(res)}
	}
	if runErr != nil {
		for _, o := range r.d.Outcomes() {
			if o.Revert == deploy.RevertSwitchedBack {
				out.RolledBack = []string{"backend"}
				if r.req.Deploy.Config.Frontend != nil {
					out.RolledBack = append(out.RolledBack, "frontend")
				}
				break
			}
		}
		if out.Database == nil && r.req.Deploy.Hooks.RestoreDatabase != nil && !r.d.Migrated() {
			out.Database = &DatabaseOutcome{Status: DatabaseUntouched, Detail: "the release's migrations did not run"}
		}
		if out.Database != nil && out.Database.Status == DatabaseRestored {
			out.RolledBack = append(out.RolledBack, "database")
		}
		return out, runErr
	}
	if out.Trigger != nil && r.keepOnTrigger {
		return out, fmt.Errorf("verification after the rollback failed (%s: %s)", out.Trigger.Kind, out.Trigger.Reason)
	}
	if out.Trigger != nil && !r.req.Deploy.Config.Rollback.Auto {
		return out, fmt.Errorf("verification failed (%s: %s); rollback.auto is false, so the release stays: `rollback --previous` puts the previous one back", out.Trigger.Kind, out.Trigger.Reason)
	}
	return out, nil
}

func firstFailure(res *pipelines.Result) string {
	for _, s := range res.Steps {
		if s.State == pipelines.Failed {
			return fmt.Sprintf("%s: %v", s.Name, s.Err)
		}
	}
	if err := res.Err(); err != nil {
		return err.Error()
	}
	return ""
}

func (r *Rollout) warn(format string, args ...any) {
	r.mu.Lock()
	r.out.Warnings = append(r.out.Warnings, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// openStore opens the snapshot store once, through the first target.
func (r *Rollout) openStore(ctx context.Context, h *remote.Host) (snapshots.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store == nil {
		s, err := snapshots.OpenStore(ctx, r.req.Deploy.Config, r.req.Deploy.Resolver, h)
		if err != nil {
			return nil, err
		}
		r.store = s
	}
	return r.store, nil
}

func (r *Rollout) current(cur *deploy.Release) *snapshots.Current {
	if cur == nil {
		return nil
	}
	cfg := r.req.Deploy.Config
	c := &snapshots.Current{ID: cur.ID, Image: cur.Image}
	if cfg.Frontend != nil {
		c.FrontendDir = deploy.NewLayout(cfg, cfg.Targets[0]).Frontend(cur.ID)
	}
	return c
}

// beforeChange takes the pre-deploy snapshot; the deploy does not go on
// without it. It returns the snapshot's id (the database's undo).
func (r *Rollout) beforeChange(ctx context.Context, h *remote.Host, cur *deploy.Release) (string, error) {
	store, err := r.openStore(ctx, h)
	if err != nil {
		return "", err
	}
	dr := r.req.Deploy
	m, err := snapshots.Create(ctx, snapshots.CreateRequest{Config: dr.Config, Resolver: dr.Resolver, Host: h, Store: store, Current: r.current(cur),
		Description: "before " + dr.ID + describe(dr.Message), Trigger: "pre-deploy", DeploymentID: dr.ID})
	if errors.Is(err, snapshots.ErrNothing) {
		return "", pipelines.Skip("first deploy and no database: nothing to snapshot")
	}
	if err != nil {
		return "", fmt.Errorf("pre-deploy snapshot (the deploy does not go on without one; --no-snapshot skips it): %w", err)
	}
	r.mu.Lock()
	r.pre, r.out.PreSnapshot = m, m.ID
	r.mu.Unlock()
	return m.ID, nil
}

func describe(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// verify runs the suite with the watch beside it. A trigger fails the step
// (so every target is reverted) when rollback.auto is on.
func (r *Rollout) verify(ctx context.Context, h *remote.Host) error {
	dr := r.req.Deploy
	cfg := dr.Config
	base := r.req.Baseline
	if base == nil {
		base = r.latestBaseline(ctx, h)
	}
	env := checks.Env{Config: cfg, Resolver: dr.Resolver, Dial: h.DialTCP, Stat: h.StatGlob, System: h, Roots: r.req.Roots, Baseline: base}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan *Watch, 1)
	wo := WatchOptionsFor(cfg, r.req.Roots)
	if r.keepOnTrigger {
		wo.Window = 0 // after a rollback, the suite's health checks are the verdict
	}
	go func() { watchDone <- RunWatch(wctx, wo) }()
	suite, err := checks.Verify(ctx, env, checks.Options{Deadline: cfg.Verification.Deadline.D()})
	w := <-watchDone
	r.mu.Lock()
	r.out.Verification, r.out.Watch = suite, w
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("the verification suite could not run: %w", err)
	}
	t := Classify(suite, w, cfg.Rollback)
	if t == nil {
		if suite.Failed() {
			var names []string
			for _, res := range suite.Results {
				if res.Status == checks.Fail {
					names = append(names, res.Name)
				}
			}
			r.warn("failed checks that are not rollback triggers (the host's resources; security ones unless rollback.on_security_failure): %s", strings.Join(names, ", "))
		}
		r.mu.Lock()
		r.kept = true
		r.mu.Unlock()
		return nil
	}
	r.mu.Lock()
	r.out.Trigger = t
	r.mu.Unlock()
	if r.keepOnTrigger {
		return nil
	}
	if !cfg.Rollback.Auto {
		r.warn("rollback trigger %s (%s); rollback.auto is false: the release stays", t.Kind, t.Reason)
		return nil
	}
	return fmt.Errorf("rollback trigger %s: %s", t.Kind, t.Reason)
}

// latestBaseline is the newest post-deploy snapshot's baseline taken of
// the image serving now (as the pre-deploy snapshot recorded it).
func (r *Rollout) latestBaseline(ctx context.Context, h *remote.Host) checks.Baseline {
	if !r.req.Deploy.Config.Snapshots.Enabled {
		return nil
	}
	store, err := r.openStore(ctx, h)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	serving := ""
	if r.pre != nil {
		serving = r.pre.Images["backend"]
	}
	r.mu.Unlock()
	ms, _ := snapshots.List(ctx, store)
	for _, m := range ms {
		if m.Trigger == "post-deploy" && len(m.Baseline) > 0 && (serving == "" || m.Images["backend"] == serving) {
			return checks.Baseline(m.Baseline)
		}
	}
	return nil
}

// afterKeep takes the post-deploy snapshot with the release's figures and
// applies retention. Failures are warnings: the release is verified and
// stays.
func (r *Rollout) afterKeep(ctx context.Context, h *remote.Host, cur *deploy.Release) error {
	store, err := r.openStore(ctx, h)
	if err != nil {
		r.warn("post-deploy snapshot: %v", err)
		return nil
	}
	dr := r.req.Deploy
	r.mu.Lock()
	var baseline checks.Baseline
	if r.out.Verification != nil {
		baseline = checks.BaselineFrom(r.out.Verification.Results)
	}
	r.mu.Unlock()
	m, err := snapshots.Create(ctx, snapshots.CreateRequest{Config: dr.Config, Resolver: dr.Resolver, Host: h, Store: store, Current: r.current(cur),
		Description: "after " + dr.ID + describe(dr.Message), Trigger: "post-deploy", DeploymentID: dr.ID, Baseline: baseline})
	if err != nil {
		r.warn("post-deploy snapshot failed (the release stays; take one with `snapshot create`): %v", err)
		return nil
	}
	r.mu.Lock()
	r.out.PostSnapshot = m.ID
	r.mu.Unlock()
	pr, err := Prune(ctx, dr.Config, dr.Resolver, h, store, time.Now(), false)
	if err != nil {
		r.warn("snapshot retention: %v", err)
	}
	if pr != nil {
		r.mu.Lock()
		r.out.Pruned = append(pr.Deleted, pr.Databases...)
		r.mu.Unlock()
	}
	return nil
}

// PruneResult is what retention decided and did.
type PruneResult struct {
	Decisions []snapshots.Decision `json:"decisions"`
	Deleted   []string             `json:"deleted,omitempty"`
	// Databases are the replaced databases (and abandoned restore copies)
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
	st, err := deploy.LoadState(h, deploy.NewLayout(cfg, cfg.Targets[0]))
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
		if _, err := deploy.ReadLock(h, deploy.NewLayout(cfg, cfg.Targets[0])); errors.Is(err, os.ErrNotExist) {
			copiesBefore = now.Add(time.Minute)
		}
		if out.Databases, err = snapshots.PruneDatabases(ctx, h, *db, pw, keepSince, copiesBefore, dryRun); err != nil {
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

// restoreDatabase restores the database from the pre-deploy snapshot when
// the undone release's migrations changed its version (the deploy's own
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
	now, err := snapshots.MigrationVersion(ctx, h, *db, pw)
	if err != nil {
		r.setDatabase(DatabaseNotRestored, fmt.Sprintf("reading its migration version failed; restore with `rollback --snapshot %s --components database`", pre.ID))
		return err
	}
	if now == pre.Database.MigrationVersion {
		r.setDatabase(DatabaseKept, fmt.Sprintf("the migration version is unchanged (%q)", now))
		return pipelines.Skip("migration version unchanged (%q)", now)
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
		res, err = snapshots.RestoreDatabase(ctx, h, *db, adminPW, store, pre, snapshots.RestoreOptions{WorkDir: deploy.NewLayout(dr.Config, dr.Config.Targets[0]).Base, Jobs: 2, Identity: id})
	}
	if err != nil {
		r.setDatabase(DatabaseNotRestored, fmt.Sprintf("migration version %q, was %q: %v; restore with `rollback --snapshot %s --components database`", now, pre.Database.MigrationVersion, err, pre.ID))
		return fmt.Errorf("restoring the database from %s: %w", pre.ID, err)
	}
	r.setDatabase(DatabaseRestored, fmt.Sprintf("from %s (migration version %q back to %q; dump %s); the replaced database is kept as %s", pre.ID, now, pre.Database.MigrationVersion, res.Transfer, res.Replaced))
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
