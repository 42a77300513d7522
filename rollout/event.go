package rollout

import (
	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/notify"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// EventInput is what a release run's notification is made of.
type EventInput struct {
	Config     *config.Config
	ID, Who    string
	Report     string
	Targets    []deploy.TargetOutcome
	Outcome    Outcome
	Err        error
	Plan       *RestorePlan // a rollback to a snapshot
	SwitchBack bool         // a switch back to the previous release
	Mask       func(string) string
}

// EventFor is the notification of a deploy or rollback: deploy.succeeded,
// deploy.failed, rollback.automatic (a trigger put the previous release
// back) or rollback.manual.
func EventFor(in EventInput) notify.Event {
	mask := in.Mask
	if mask == nil {
		mask = func(s string) string { return s }
	}
	out := in.Outcome
	ev := notify.Event{App: in.Config.App, Environment: in.Config.Environment, DeploymentID: in.ID, Status: "succeeded", Who: in.Who,
		Report: in.Report, Snapshot: out.PostSnapshot}
	if in.Err != nil {
		ev.Status, ev.Reason = "failed", mask(in.Err.Error())
	}
	if len(in.Targets) > 0 {
		ev.Release, ev.Image = in.Targets[0].Release, in.Targets[0].Image
	}
	if v := out.Verification; v != nil {
		ev.Summary = map[string]int{"pass": v.Count(checks.Pass), "fail": v.Count(checks.Fail), "warn": v.Count(checks.Warn), "skip": v.Count(checks.Skip)}
	}
	switch {
	case in.Plan != nil:
		ev.Event, ev.Trigger, ev.Components, ev.Snapshot = notify.RollbackManual, "manual", componentNames(in.Plan.Components), in.Plan.Snapshot
	case in.SwitchBack:
		cs := []snapshots.Component{snapshots.ComponentBackend}
		if in.Config.Frontend != nil {
			cs = append(cs, snapshots.ComponentFrontend)
		}
		ev.Event, ev.Trigger, ev.Components = notify.RollbackManual, "manual", componentNames(cs)
	case out.Trigger != nil && len(out.RolledBack) > 0:
		ev.Event, ev.Trigger, ev.Components, ev.Reason = notify.RollbackAuto, out.Trigger.Kind, componentNames(out.RolledBack), mask(out.Trigger.Reason)
	case in.Err != nil:
		ev.Event = notify.DeployFailed
		if out.Trigger != nil {
			ev.Trigger = out.Trigger.Kind
		}
	default:
		ev.Event = notify.DeploySucceeded
	}
	return ev
}

func componentNames(cs []snapshots.Component) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}
