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
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/monitoring"
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
	// TriggerCrash: the new backend exited, restarted or was killed for
	// memory during the watch window.
	TriggerCrash = "backend_crash"
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
	RolledBack []snapshots.Component `json:"rolled_back,omitempty"`
	// Database says what happened to the database on a rollback.
	Database *DatabaseOutcome `json:"database,omitempty"`
	Pruned   []string         `json:"pruned_snapshots,omitempty"`
	// Certificates is what the certificates step did (tls.enabled).
	Certificates []certs.Result `json:"certificates,omitempty"`
	Warnings     []string       `json:"warnings,omitempty"`
	// HoldSeconds is how long nginx answered 503 (with Retry-After) on
	// every request while a rollback swapped its database in and started
	// the snapshot's backend (0: no hold).
	HoldSeconds float64 `json:"hold_seconds,omitempty"`
	// ErrorLines are the new release's distinct error lines from the log
	// store (monitoring.logs), secrets masked; ErrorLinesFrom says where
	// they were read, or why not.
	ErrorLines     []monitoring.ErrorLine `json:"error_lines,omitempty"`
	ErrorLinesFrom string                 `json:"error_lines_from,omitempty"`
	// Canary is the canary's verdict and both releases' figures
	// (rollout.canary).
	Canary *deploy.CanaryResult `json:"canary,omitempty"`
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
	began         time.Time // Prepare's time: the new release's lines are after it
}

// Prepare checks the request and builds the graph; nothing on any target
// is touched until it runs.
func Prepare(req Request) (*Rollout, error) {
	r := &Rollout{req: req, began: time.Now()}
	cfg := req.Deploy.Config
	h := deploy.PlanHooks(cfg, req.Deploy.NoSnapshot)
	// The plan's conditions decide which hooks exist; these do the work.
	h.Verify = r.verify
	if h.BeforeChange != nil {
		h.BeforeChange, h.AfterKeep = r.beforeChange, r.afterKeep
	}
	if h.RestoreDatabase != nil {
		h.RestoreDatabase, h.StageDatabaseUndo = r.restoreDatabase, r.stageUndo
	}
	h.AfterConverge = r.afterConverge
	if cfg.Database != nil {
		h.Unhold = r.unhold // converging a rollback killed inside its hold
	}
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
	out.HoldSeconds = r.d.HoldLength().Seconds()
	out.Warnings = append(out.Warnings, r.d.Warnings()...)
	out.Canary = r.d.CanaryResult()
	runErr := res.Err()
	if runErr != nil && out.Trigger == nil && !refusedAtTheLock(res) {
		out.Trigger = &Trigger{Kind: TriggerDeployFailure, Reason: firstFailure(res)}
	}
	if runErr != nil {
		for _, o := range r.d.Outcomes() {
			if o.Revert == deploy.RevertSwitchedBack {
				out.RolledBack = []snapshots.Component{snapshots.ComponentBackend}
				if r.req.Deploy.Config.Frontend != nil {
					out.RolledBack = append(out.RolledBack, snapshots.ComponentFrontend)
				}
				break
			}
		}
		if out.Database == nil && r.req.Deploy.Hooks.RestoreDatabase != nil && !r.d.Migrated() {
			out.Database = &DatabaseOutcome{Status: DatabaseUntouched, Detail: "neither the migrations nor the new backend started"}
		}
		if out.Database != nil && out.Database.Status == DatabaseRestored {
			out.RolledBack = append(out.RolledBack, snapshots.ComponentDatabase)
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

// refusedAtTheLock says the run failed taking a lock (held by another
// deploy, or the target unreachable): refused, nothing rolled back.
func refusedAtTheLock(res *pipelines.Result) bool {
	for _, s := range res.Steps {
		if s.State == pipelines.Failed {
			return strings.HasPrefix(s.Name, deploy.StepLock+":")
		}
	}
	return false
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

// current is the serving release as a snapshot holds it: its frontend
// when it has one (it may have none while the new configuration adds one,
// or the other way round: the serving release decides, not the
// configuration).
func (r *Rollout) current(h *remote.Host, cur *deploy.Release) *snapshots.Current {
	if cur == nil {
		return nil
	}
	c := &snapshots.Current{ID: cur.ID, Image: cur.Image}
	dir := deploy.PrimaryLayout(r.req.Deploy.Config).Frontend(cur.ID)
	if fs, err := h.Files(); err == nil {
		if st, err := fs.Stat(dir); err == nil && st.IsDir() {
			c.FrontendDir = dir
		}
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
	m, err := snapshots.Create(ctx, snapshots.CreateRequest{Config: dr.Config, Resolver: dr.Resolver, Host: h, Store: store, Current: r.current(h, cur),
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
	m, err := snapshots.Create(ctx, snapshots.CreateRequest{Config: dr.Config, Resolver: dr.Resolver, Host: h, Store: store, Current: r.current(h, cur),
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
		r.out.Pruned = append(append(pr.Deleted, pr.Databases...), pr.RestoreCopies...)
		r.mu.Unlock()
	}
	return nil
}
