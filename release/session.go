package release

import (
	"context"
	"log/slog"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/notify"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// Kind is what a release run does, for its notification.
type Kind string

// Kinds.
const (
	KindDeploy     Kind = "deploy"
	KindRollback   Kind = "rollback"    // to a snapshot
	KindSwitchBack Kind = "switch_back" // to the warm previous release
	KindAbort      Kind = "abort"       // of a held canary
)

// Release is a prepared graph and how to read its result.
type Release struct {
	Kind   Kind
	Graph  *pipelines.Graph
	Finish func(*pipelines.Result) ([]deploy.TargetOutcome, rollout.Outcome, error)
	// ErrorLines adds the new release's error lines to the outcome (a
	// deploy with monitoring.logs; nil: none).
	ErrorLines func(context.Context, *rollout.Outcome)
	// Plan is a rollback's plan, for its notification.
	Plan *rollout.RestorePlan
}

// Deploy is a rollout's release.
func Deploy(r *rollout.Rollout) Release {
	return Release{Kind: KindDeploy, Graph: r.Graph(), Finish: func(res *pipelines.Result) ([]deploy.TargetOutcome, rollout.Outcome, error) {
		out, err := r.Finish(res)
		return r.Deployment().Outcomes(), out, err
	}, ErrorLines: r.ReadErrorLines}
}

// Rollback is a rollback to a snapshot.
func Rollback(r *rollout.Restore, plan *rollout.RestorePlan) Release {
	return Release{Kind: KindRollback, Graph: r.Graph(), Plan: plan, Finish: func(res *pipelines.Result) ([]deploy.TargetOutcome, rollout.Outcome, error) {
		out, err := r.Finish(res)
		return r.Deployment().Outcomes(), out, err
	}}
}

// SwitchBack is the switch to the warm previous release.
func SwitchBack(d *deploy.Deployment) Release {
	return Release{Kind: KindSwitchBack, Graph: d.Graph(), Finish: func(res *pipelines.Result) ([]deploy.TargetOutcome, rollout.Outcome, error) {
		return d.Outcomes(), rollout.Outcome{}, res.Err()
	}}
}

// Abort is the abort of a held canary.
func Abort(r *rollout.Rollout) Release {
	return Release{Kind: KindAbort, Graph: r.Graph(), Finish: func(res *pipelines.Result) ([]deploy.TargetOutcome, rollout.Outcome, error) {
		out, err := r.FinishAbort(res)
		return r.Deployment().Outcomes(), out, err
	}}
}

// Request is what a front door gives a run.
type Request struct {
	Config   *config.Config
	Resolver *config.Resolver
	ID, Who  string
	// Report is where the run's report will be, for the notification.
	Report   string
	Observer pipelines.Observer
	Logger   *slog.Logger
	// Abort, closed on a second interrupt, cancels running steps.
	Abort <-chan struct{}
	// Mask redacts secrets from the notification's text.
	Mask func(string) string
}

// Result is a finished run, typed: nothing in it is to be parsed.
type Result struct {
	Run           *pipelines.Result
	Targets       []deploy.TargetOutcome
	Outcome       rollout.Outcome
	Notifications []notify.Delivery
	// Err is the run's error (or the verification's, when rollback.auto
	// kept a failing release).
	Err error
}

// Options are the scheduling options of every release run: the one place
// they are decided.
func Options(cfg *config.Config, req Request) pipelines.Options {
	return pipelines.Options{
		MaxWorkers: cfg.Execution.MaxWorkers, Serial: !cfg.Execution.Parallel,
		// Every Always step (revert, restore-database, unlock) must run
		// whatever failed before it.
		ContinueOnFailure: true,
		DefaultTimeout:    cfg.Execution.StepTimeout.D(), Drain: cfg.Execution.Drain.D(), Abort: req.Abort,
		Observer: req.Observer, Logger: req.Logger,
	}
}

// Run runs the release, finishes it and sends its notification (a channel
// that fails is a delivery marked failed, never a failed run).
func Run(ctx context.Context, req Request, rel Release) Result {
	res := pipelines.Run(ctx, rel.Graph, Options(req.Config, req))
	targets, outcome, err := rel.Finish(res)
	if rel.ErrorLines != nil {
		rel.ErrorLines(context.WithoutCancel(ctx), &outcome)
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	mask := req.Mask
	if mask == nil {
		mask = func(s string) string { return s }
	}
	deliveries := notify.New(req.Config.Notifications, req.Resolver).Send(nctx, rollout.EventFor(rollout.EventInput{Config: req.Config, ID: req.ID, Who: req.Who, Report: req.Report,
		Targets: targets, Outcome: outcome, Err: err, Plan: rel.Plan, SwitchBack: rel.Kind == KindSwitchBack, Mask: mask}))
	return Result{Run: res, Targets: targets, Outcome: outcome, Notifications: deliveries, Err: err}
}
