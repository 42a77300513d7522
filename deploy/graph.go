package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/pipelines"
)

// Per-target step names beyond plan.go's.
const (
	StepPrepare     = "prepare"
	StepBootstrapDB = "bootstrap-database"
	StepPrune       = "prune"
	StepRevert      = "revert"
	// Hook steps (Request.Hooks).
	StepBeforeChange  = "snapshot-before"
	StepVerifyRelease = "verify-release"
	StepAfterKeep     = "snapshot-after"
	StepAfterRevert   = "restore-database"
	StepCertificates  = "certificates"
	StepMonitoring    = "monitoring"
	StepLogStore      = "log-store"
	// StepBatch is the watch between two batches (rollout.batch):
	// batch-1, batch-2, ...
	StepBatch = "batch"
)

// network is the retry policy of steps that open connections.
var network = pipelines.RetryPolicy{Attempts: 3, Initial: time.Second, Max: 5 * time.Second}

// graphBuilder collects steps with the configured default timeout.
type graphBuilder struct {
	def   time.Duration
	steps []pipelines.Step
}

func (b *graphBuilder) add(s pipelines.Step) string {
	if s.Timeout == 0 {
		s.Timeout = b.def
	}
	b.steps = append(b.steps, s)
	return s.Name
}

// onTarget is a step of one target, named "<step>:<target>", that does
// nothing (skipped, with the reason) on a target that already serves the
// requested release.
func (d *Deployment) onTarget(tr *targetRun, step string, needs []string, timeout time.Duration, description string, run func(context.Context, *targetRun) error) pipelines.Step {
	return d.guarded(tr, step+":"+tr.cfg.Name, needs, timeout, description, run)
}

// guarded is onTarget with the step's whole name (a once-per-deploy step
// that runs on the primary target).
func (d *Deployment) guarded(tr *targetRun, name string, needs []string, timeout time.Duration, description string, run func(context.Context, *targetRun) error) pipelines.Step {
	return pipelines.Step{Name: name, Needs: nonEmpty(needs...), Timeout: timeout, Description: description,
		Run: func(ctx context.Context) error {
			if tr.noop != "" {
				return pipelines.Skip("%s", tr.noop)
			}
			if d.holdingCanary() {
				return pipelines.Skip("%s", canaryHeldNote)
			}
			return run(ctx, tr)
		}}
}

// once is a step of the whole deploy that does nothing when every target
// already serves the requested release.
func (d *Deployment) once(name string, needs []string, timeout time.Duration, description string, run func(context.Context) error) pipelines.Step {
	return pipelines.Step{Name: name, Needs: nonEmpty(needs...), Timeout: timeout, Description: description,
		Run: func(ctx context.Context) error {
			if d.allNoop() {
				return pipelines.Skip("%s", d.primary().noop)
			}
			if d.holdingCanary() {
				return pipelines.Skip("%s", canaryHeldNote)
			}
			return run(ctx)
		}}
}

// lockStep connects to a target and takes its deploy lock.
func (d *Deployment) lockStep(tr *targetRun, description string) pipelines.Step {
	return pipelines.Step{Name: StepLock + ":" + tr.cfg.Name, Timeout: 2*time.Minute + d.req.LockWait, Retry: network, Description: description,
		Run: func(ctx context.Context) error { return d.lock(ctx, tr) }}
}

// unlockStep releases a target's lock, whatever happened before needs.
func (d *Deployment) unlockStep(tr *targetRun, needs ...string) pipelines.Step {
	return pipelines.Step{Name: StepUnlock + ":" + tr.cfg.Name, Needs: nonEmpty(needs...), Always: true, Timeout: time.Minute,
		Description: "release the deploy lock", Run: func(ctx context.Context) error { return d.unlock(ctx, tr) }}
}

// steps is the deploy DAG with its implementations.
func (d *Deployment) steps() []pipelines.Step {
	cfg := d.req.Config
	b := &graphBuilder{def: cfg.Execution.StepTimeout.D()}
	first := d.primary()
	var pulls, prepares []string
	for _, tr := range d.targets {
		lock := b.add(d.lockStep(tr, fmt.Sprintf("connect to %s@%s:%d and take the deploy lock", tr.cfg.SSH.User, tr.cfg.Host, tr.cfg.SSH.Port)))
		prep := b.add(pipelines.Step{Name: StepPrepare + ":" + tr.cfg.Name, Needs: []string{lock},
			Description: "converge an interrupted run (replay its undo journal), write the release folder and env file (0600), pick a port",
			Run:         func(ctx context.Context) error { return d.prepare(ctx, tr) }})
		prepares = append(prepares, prep)
		pulls = append(pulls, b.add(d.onTarget(tr, StepPull, []string{prep}, 0, "pull "+d.req.Image, d.pull)))
	}
	// Bootstrap first: the pre-deploy snapshot connects as the app's role.
	var bootstrap string
	if db := cfg.Database; db != nil && db.Bootstrap {
		bootstrap = b.add(pipelines.Step{Name: StepBootstrapDB, Needs: []string{StepLock + ":" + first.cfg.Name}, Timeout: 2 * time.Minute,
			Description: fmt.Sprintf("create role %s and database %s when missing (as %s, from %s)", db.User, db.Name, db.AdminUser, first.cfg.Name),
			Run:         func(ctx context.Context) error { return d.bootstrapDB(ctx, first) }})
	}
	var before string
	if hk := d.req.Hooks.BeforeChange; hk != nil {
		before = b.add(d.guarded(first, StepBeforeChange, []string{prepares[0], bootstrap}, time.Hour,
			"pre-deploy snapshot of the serving release and its database (before migrations); the journal records that the database goes back to it if the run is undone",
			func(ctx context.Context, tr *targetRun) error {
				var cur *Release
				if r, ok := tr.state.Current(); ok {
					cur = &r
				}
				id, err := hk(ctx, tr.host, cur)
				d.snapshot = id
				if err != nil || id == "" || d.req.Hooks.RestoreDatabase == nil {
					return err
				}
				// Write-ahead, before anything can touch the schema: the
				// migrations, or a backend that migrates at its start.
				return tr.record(StepBeforeChange, Undo{Kind: UndoDatabase, Snapshot: id})
			}))
	}
	var migrate string
	if len(cfg.Backend.MigrateCommand) > 0 && !d.req.NoMigrate {
		migrate = b.add(d.guarded(first, StepMigrate, append([]string{pulls[0], bootstrap, before}, prepares...), 0,
			"run `"+strings.Join(cfg.Backend.MigrateCommand, " ")+"` once, in the new image, on "+first.cfg.Name, d.migrate))
	}
	var hold string
	if hk := d.req.Hooks.Hold; hk != nil {
		hold = b.add(d.once(StepHold, append(append([]string{migrate, before}, pulls...), prepares...), 0,
			"maintenance hold on every target (nginx answers 503 with Retry-After, ACME tokens still served), then "+hk.Description+"; the switch ends the hold",
			d.hold))
	}
	stores := make([]string, len(d.targets))
	if cfg.Monitoring.LogsOn() {
		for i, tr := range d.targets {
			stores[i] = b.add(d.onTarget(tr, StepLogStore, []string{prepares[i]}, 2*time.Minute,
				"run the log store (VictoriaLogs, "+cfg.Monitoring.Logs.Image+") unless it runs with these settings; down: a warning, the deploy goes on", d.logStore))
		}
	}
	// Nothing starts before every target is locked and prepared: a host
	// that cannot be reached fails the deploy with nothing changed.
	startNeeds := func(i int, more ...string) []string {
		return append(append([]string{pulls[i], migrate, before, hold, stores[i]}, more...), prepares...)
	}
	var verifies []string
	batches := d.batches()
	gateBefore := ""
	for bi, batch := range batches {
		var inBatch []string
		for _, i := range batch {
			tr := d.targets[i]
			start := b.add(d.onTarget(tr, StepStartBackend, startNeeds(i, gateBefore), 0, "start the new backend beside the old one", d.start))
			gate := cfg.Backend.HealthGate
			health := b.add(d.onTarget(tr, StepHealthGate, []string{start}, gate.Deadline.D()+30*time.Second,
				fmt.Sprintf("GET %s until %d passes in a row (every %s, deadline %s)", cfg.Backend.HealthPath, gate.ConsecutivePasses, gate.Interval, gate.Deadline), d.health))
			switchNeeds := []string{health}
			if d.local != nil {
				switchNeeds = append(switchNeeds, b.add(d.onTarget(tr, StepUpload, []string{prepares[i]}, 0, "upload changed frontend files into the release folder", d.upload)))
			}
			sw := b.add(d.onTarget(tr, StepSwitch, switchNeeds, 2*time.Minute,
				"point nginx at the new release (nginx -t, reload): backend and frontend switch together; the target switches back by itself if this run dies before the release is verified", d.switchOver))
			inBatch = append(inBatch, b.add(d.onTarget(tr, StepVerify, []string{sw}, time.Minute, "GET "+cfg.Backend.HealthPath+" through nginx", d.verify)))
		}
		verifies = append(verifies, inBatch...)
		if bi < len(batches)-1 {
			watch := cfg.Rollout.BatchWatch.D()
			gateBefore = b.add(d.once(fmt.Sprintf("%s-%d", StepBatch, bi+1), inBatch, watch+time.Minute,
				fmt.Sprintf("batch %d of %d (%s) switched: watch it for %s (health through nginx, backends running steadily) before batch %d starts; a failure puts every switched host back",
					bi+1, len(batches), d.targetNames(batch), watch, bi+2),
				func(ctx context.Context) error { return d.watchBatch(ctx, batch) }))
		}
	}
	for i, tr := range d.targets {
		if !tr.cfg.HasRole("worker") {
			continue
		}
		start := b.add(d.onTarget(tr, StepStartWorker, startNeeds(i), 0,
			fmt.Sprintf("start the new worker (`%s`) and watch it run steadily for %s", strings.Join(cfg.Backend.WorkerCommand, " "), d.workerGate()), d.startWorker))
		verifies = append(verifies, b.add(d.onTarget(tr, StepSwitchWorker, []string{start}, 2*time.Minute,
			"stop the previous release's worker (it starts again if the deploy is undone)", d.switchWorker)))
	}
	kept := verifies
	if c := cfg.Rollout.Canary; c != nil && !d.req.NoCanary {
		kept = []string{b.add(d.once(StepCanary, verifies, 3*c.Duration.D()+2*time.Minute,
			fmt.Sprintf("canary: %d%% of the clients on the new release%s for %s, both releases' error rate and p95 from nginx's canary log; promote (every client on the new release), or abort (every target back) over max_error_rate %.2f%% or max_latency_ratio %.1fx; fewer than %d requests: wait (up to 3x)",
				c.Weight, map[bool]string{true: " (sticky cookie)", false: ""}[c.Sticky], c.Duration, 100*c.MaxErrorRate, c.MaxLatencyRatio, c.MinRequests), d.canary))}
	}
	if cfg.TLS.Enabled {
		kept = []string{b.add(d.once(StepCertificates, verifies, 15*time.Minute,
			fmt.Sprintf("check DNS, obtain or renew certificates for %s (%s), install them, switch the site to HTTPS", strings.Join(cfg.Domains, ", "), cfg.TLS.Challenge), d.certificates))}
	}
	if cfg.Monitoring.Enabled {
		kept = []string{b.add(d.once(StepMonitoring, kept, 5*time.Minute,
			"render Prometheus config, alert rules and Grafana provisioning for the new backend, check them with promtool, apply on "+first.cfg.Name+" (Prometheus reloads without a restart)",
			func(ctx context.Context) error { return d.monitoring(ctx, first) }))}
	}
	if hk := d.req.Hooks.Verify; hk != nil {
		kept = []string{b.add(d.once(StepVerifyRelease, kept, time.Hour, "verification suite and watch window; a trigger rolls every target back",
			func(ctx context.Context) error { return hk(ctx, first.host) }))}
	}
	var prunes []string
	for _, tr := range d.targets {
		prunes = append(prunes, b.add(pipelines.Step{Name: StepPrune + ":" + tr.cfg.Name, Needs: kept, Timeout: 5 * time.Minute,
			Description: fmt.Sprintf("mark the release verified, keep %d releases; stop the previous backend after %s", cfg.Backend.KeepReleases, cfg.Backend.RollbackWindow),
			Run:         func(ctx context.Context) error { return d.prune(ctx, tr) }}))
	}
	var after string
	if hk := d.req.Hooks.AfterKeep; hk != nil {
		after = b.add(d.once(StepAfterKeep, prunes, time.Hour, "post-deploy snapshot of the new release, its database and its verification baseline",
			func(ctx context.Context) error {
				r, ok := first.state.Current()
				if !ok {
					return errors.New("post-deploy: state.json has no current release")
				}
				return hk(ctx, first.host, &r)
			}))
	}
	var swapDB string
	if d.req.Hooks.RestoreDatabase != nil && d.req.Hooks.StageDatabaseUndo != nil {
		swapDB = b.add(pipelines.Step{Name: StepSwapDatabase, Needs: nonEmpty(append(append([]string(nil), prunes...), after)...), Always: true, Timeout: time.Hour,
			Description: "when the deploy is undone after its migrations changed the schema: restore the pre-deploy snapshot into a copy while the release still serves, hold every target (503, Retry-After), swap the copy in; the reverts end the hold",
			Run:         d.swapDatabase})
	}
	var reverts []string
	for i, tr := range d.targets {
		reverts = append(reverts, b.add(pipelines.Step{Name: StepRevert + ":" + tr.cfg.Name, Needs: nonEmpty(prunes[i], after, swapDB), Always: true, Timeout: 3 * time.Minute,
			Description: "on failure or Ctrl-C: replay the undo journal (the previous release back, the new one removed)",
			Run:         func(ctx context.Context) error { return d.revert(ctx, tr) }}))
	}
	var afterRevert string
	if hk := d.req.Hooks.RestoreDatabase; hk != nil {
		afterRevert = b.add(pipelines.Step{Name: StepAfterRevert, Needs: reverts, Always: true, Timeout: time.Hour,
			Description: "when the deploy was undone after its migrations changed the schema: restore the database from the pre-deploy snapshot",
			Run:         func(ctx context.Context) error { return d.restoreDatabase(ctx, hk) }})
	}
	for i, tr := range d.targets {
		b.add(d.unlockStep(tr, reverts[i], afterRevert))
	}
	return b.steps
}
