package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// ErrNoHeldCanary is wrapped when promote or abort finds no held canary.
var ErrNoHeldCanary = errors.New("no canary is held")

// ReadHeldCanary reads a target's held canary, checking that its deploy
// still holds the lock.
func ReadHeldCanary(h *remote.Host, l Layout, target string) (HeldCanary, error) {
	data, err := h.ReadFile(heldCanaryFile(l))
	if errors.Is(err, os.ErrNotExist) {
		return HeldCanary{}, fmt.Errorf("%s: %w (deploy --canary-hold leaves one)", target, ErrNoHeldCanary)
	}
	if err != nil {
		return HeldCanary{}, err
	}
	var hc HeldCanary
	if err := json.Unmarshal(data, &hc); err != nil || hc.Deploy == "" {
		return HeldCanary{}, fmt.Errorf("%s: %s is not a held canary (%v)", target, heldCanaryFile(l), err)
	}
	lock, err := ReadLock(h, l)
	if err != nil || lock.ID != hc.Deploy {
		return hc, fmt.Errorf("%s: the held canary's deploy %s does not hold the deploy lock any more (%v %s); nothing was changed", target, hc.Deploy, err, lock)
	}
	return hc, nil
}

// PromoteCanary finishes a held canary on a target: the site without the
// split (written when the canary was held) checked and reloaded, the
// release kept (verified, its journal cleared), the previous backend
// stopped after backend.rollback_window, the lock released.
func PromoteCanary(ctx context.Context, cfg *config.Config, t config.Target, h *remote.Host) (HeldCanary, error) {
	l := NewLayout(cfg, t)
	hc, err := ReadHeldCanary(h, l, t.Name)
	if err != nil {
		return hc, err
	}
	if t.HasRole("web") {
		if _, err := h.Run(ctx, "mv", "-f", promotedSite(l, hc.Release), l.SiteConf(hc.Release)); err != nil {
			return hc, fmt.Errorf("%s: %w", t.Name, err)
		}
		if err := pointSite(ctx, h, t, l, l.SiteConf(hc.Release), l.SiteConf(hc.Release)); err != nil {
			return hc, err
		}
	}
	st, err := LoadState(h, l)
	if err != nil {
		return hc, err
	}
	for i := range st.Releases {
		if st.Releases[i].ID == hc.Release {
			st.Releases[i].Verified = true
		}
	}
	st.InProgress = nil
	if err := SaveState(h, l, st); err != nil {
		return hc, err
	}
	if prev, ok := st.Previous(); ok && t.HasRole("web") {
		_, _ = h.Run(ctx, "sh", "-c", detachCmd(stopAfter(Docker{Host: t.Docker.Host}, l, prev.Container, cfg.Backend.RollbackWindow.D())))
	}
	if err := h.Remove(heldCanaryFile(l)); err != nil {
		return hc, err
	}
	return hc, ReleaseLock(ctx, h, l, hc.Deploy, false)
}

// PrepareAbort builds the abort of a held canary: on every target, under
// the canary deploy's lock (adopted), its journal replayed as a revert
// would have (the previous release serving alone again, the new one
// removed, the database restored from the pre-deploy snapshot when the
// release changed it: the first target's last, once the others are
// back), then the lock released.
func PrepareAbort(ctx context.Context, req Request) (*Deployment, error) {
	first := req.Config.Primary()
	e, err := Endpoint(first, req.Resolver)
	if err != nil {
		return nil, err
	}
	h, err := remote.Connect(ctx, e, 2)
	if err != nil {
		return nil, err
	}
	hc, err := ReadHeldCanary(h, NewLayout(req.Config, first), first.Name)
	h.Close()
	if err != nil {
		return nil, err
	}
	req.ID = hc.Deploy // the run adopts the canary deploy's lock and journal
	d := newDeployment(req)
	var steps, others []pipelines.Step
	for i, tr := range d.targets {
		step := pipelines.Step{Name: "abort:" + tr.cfg.Name, Timeout: time.Hour, Retry: network,
			Description: "replay the held canary's journal: the previous release serves alone again, the new one is removed (and, on the first target, the database restored when the release changed it)",
			Run:         func(ctx context.Context) error { return d.abortOn(ctx, tr) }}
		if i == 0 {
			continue
		}
		others = append(others, step)
	}
	var needs []string
	for _, s := range others {
		needs = append(needs, s.Name)
	}
	steps = append(steps, others...)
	tr0 := d.primary()
	steps = append(steps, pipelines.Step{Name: "abort:" + tr0.cfg.Name, Needs: needs, Timeout: time.Hour, Retry: network,
		Description: "replay the held canary's journal on the first target, the database last", Run: func(ctx context.Context) error { return d.abortOn(ctx, tr0) }})
	for _, tr := range d.targets {
		steps = append(steps, d.unlockStep(tr, "abort:"+tr.cfg.Name))
	}
	g, err := pipelines.New(steps...)
	if err != nil {
		return nil, err
	}
	d.graph = g
	return d, nil
}

// abortOn adopts a target's held canary and converges its journal.
func (d *Deployment) abortOn(ctx context.Context, tr *targetRun) error {
	if tr.host == nil {
		e, err := Endpoint(tr.cfg, d.req.Resolver)
		if err != nil {
			return err
		}
		if tr.host, err = remote.Connect(ctx, e, 1); err != nil {
			return err
		}
	}
	hc, err := ReadHeldCanary(tr.host, tr.layout, tr.cfg.Name)
	if errors.Is(err, ErrNoHeldCanary) {
		return pipelines.Skip("no held canary here")
	}
	if err != nil {
		return err
	}
	if hc.Deploy != d.req.ID {
		return fmt.Errorf("%s holds the canary of deploy %s, the first target %s: deploy them apart", tr.cfg.Name, hc.Deploy, d.req.ID)
	}
	tr.mu.Lock()
	tr.locked = true
	tr.mu.Unlock()
	if _, err := d.loadState(ctx, tr); err != nil {
		return err
	}
	return tr.host.Remove(heldCanaryFile(tr.layout))
}
