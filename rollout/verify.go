package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// verify runs the suite with the watch beside it. A trigger fails the step
// (so every target is reverted) when rollback.auto is on.
func (r *Rollout) verify(ctx context.Context, h *remote.Host) error {
	dr := r.req.Deploy
	cfg := dr.Config
	base := r.req.Baseline
	if base == nil {
		base = r.latestBaseline(ctx, h)
	}
	route := RouteThrough(cfg, h)
	env := checks.Env{Config: cfg, Resolver: dr.Resolver, Dial: h.DialTCP, Stat: h.StatGlob, System: h, Roots: r.req.Roots, Baseline: base,
		BackendPorts: map[string][]int{}, Route: route}
	for _, o := range r.d.Outcomes() {
		if o.Port > 0 {
			env.BackendPorts[o.Target] = append(env.BackendPorts[o.Target], o.Port)
		}
		for _, p := range o.Ports {
			env.BackendPorts[o.Target] = append(env.BackendPorts[o.Target], p)
		}
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan *Watch, 1)
	wo := WatchOptionsFor(cfg, r.req.Roots)
	wo.Route = route
	if r.keepOnTrigger {
		wo.Window = 0 // after a rollback, the suite's health checks are the verdict
	}
	wo.Crashed = r.d.Crashed
	tally := r.d.TallyRequests(wctx, 500*time.Millisecond)
	wo.Served = tally.Counts
	// A watch that triggers ends the suite: the release goes back now, not
	// when the last check is done.
	sctx, stopSuite := context.WithCancel(ctx)
	defer stopSuite()
	go func() {
		w := RunWatch(wctx, wo)
		if w.Triggered {
			stopSuite()
		}
		watchDone <- w
	}()
	suite, err := checks.Verify(sctx, env, checks.Options{Deadline: cfg.Verification.Deadline.D()})
	w := <-watchDone
	if err != nil && w.Triggered && ctx.Err() == nil {
		err = nil // cut short by the watch's trigger
	}
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
		serving = r.pre.Images[snapshots.ComponentBackend]
	}
	r.mu.Unlock()
	b, _ := baselineOf(ctx, store, serving)
	return b
}

// baselineOf is the baseline of the newest post-deploy snapshot taken of
// image (any image when ""), and that snapshot's id.
func baselineOf(ctx context.Context, store snapshots.Store, image string) (checks.Baseline, string) {
	ms, _ := snapshots.List(ctx, store)
	for _, m := range ms {
		if m.Trigger == "post-deploy" && len(m.Baseline) > 0 && (image == "" || m.Images[snapshots.ComponentBackend] == image) {
			return checks.Baseline(m.Baseline), m.ID
		}
	}
	return nil, ""
}
