package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// Promote finishes a canary held by deploy --canary-hold on every target:
// every client on the new release, the release kept, the lock released.
func Promote(ctx context.Context, cfg *config.Config, res *config.Resolver) ([]deploy.HeldCanary, error) {
	var out []deploy.HeldCanary
	for _, t := range cfg.Targets {
		e, err := deploy.Endpoint(t, res)
		if err != nil {
			return out, fmt.Errorf("%s: %w", t.Name, err)
		}
		h, err := remote.Connect(ctx, e, 2)
		if err != nil {
			return out, &TargetError{fmt.Errorf("%s: %w", t.Name, err)}
		}
		hc, err := deploy.PromoteCanary(ctx, cfg, t, h)
		h.Close()
		if err != nil {
			return out, err
		}
		out = append(out, hc)
	}
	return out, nil
}

// PrepareAbort prepares the abort of a held canary (deploy.PrepareAbort)
// with what converging needs: the database restored from the pre-deploy
// snapshot when the release's migrations changed it.
func PrepareAbort(ctx context.Context, cfg *config.Config, res *config.Resolver, who string, req deploy.Request) (*Rollout, error) {
	req.Config, req.Resolver, req.Who = cfg, res, who
	r := &Rollout{req: Request{Deploy: req}, began: time.Now()}
	h := deploy.PlanHooks(cfg, false)
	h.Verify, h.BeforeChange, h.AfterKeep = nil, nil, nil
	if h.RestoreDatabase != nil {
		h.RestoreDatabase, h.StageDatabaseUndo = r.restoreDatabase, r.stageUndo
	}
	h.AfterConverge = r.afterConverge
	if cfg.Database != nil {
		h.Unhold = r.unhold
	}
	req.Hooks = h
	r.req.Deploy = req
	d, err := deploy.PrepareAbort(ctx, req)
	if err != nil {
		return nil, err
	}
	r.d = d
	return r, nil
}

// FinishAbort reads an abort's run: what happened to the database.
func (r *Rollout) FinishAbort(res *pipelines.Result) (Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.out
	if res.Err() == nil {
		out.RolledBack = []snapshots.Component{snapshots.ComponentBackend}
		if out.Database != nil && out.Database.Status == DatabaseRestored {
			out.RolledBack = append(out.RolledBack, snapshots.ComponentDatabase)
		}
	}
	return out, res.Err()
}
