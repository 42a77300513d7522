package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// VerifyRequest is a verification run outside a deploy (the `verify`
// verb of both front doors).
type VerifyRequest struct {
	Config     *config.Config
	Resolver   *config.Resolver
	BaseURL    string            // overrides verification.base_url
	Categories []checks.Category // empty: verification.categories
	// Baseline is the caller's (a report it keeps); nil reads the newest
	// post-deploy snapshot's baseline of the serving image from the
	// snapshot store, which outlives any one machine or Dagger call.
	Baseline     checks.Baseline
	BaselineFrom string // where the caller's baseline came from
	NoSSH        bool   // do not connect to the first target
	Site         bool   // any URL, no deployment (checks.Env.Site)
}

// VerifyRun is what a verification run found.
type VerifyRun struct {
	Suite        *checks.Suite
	BaseURL      string
	BaselineFrom string // "" when there was no baseline
	// Note says what could not be checked and why (SSH failed), for people.
	Note string
}

// Verify runs the suite: through the first target's SSH connection for
// the database, Redis, file modes and system figures (and for every
// connection to the target when it is itself reached through a forward),
// with a performance baseline.
func Verify(ctx context.Context, req VerifyRequest) (*VerifyRun, error) {
	cfg := req.Config
	env := checks.Env{Config: cfg, Resolver: req.Resolver, BaseURL: req.BaseURL, Categories: req.Categories, Site: req.Site, Baseline: req.Baseline}
	run := &VerifyRun{BaseURL: checks.BaseURL(cfg, req.BaseURL), BaselineFrom: req.BaselineFrom}
	var h *remote.Host
	if !req.NoSSH {
		t := cfg.Primary()
		e, err := deploy.Endpoint(t, req.Resolver)
		if err == nil {
			h, err = remote.Connect(ctx, e, 2)
		}
		switch {
		case err == nil:
			defer h.Close()
			env.Dial, env.Stat, env.System = h.DialTCP, h.StatGlob, h
			env.Route = RouteThrough(cfg, h)
		case t.SSH.Via != "":
			// Nothing of the target can be reached but through it.
			return nil, fmt.Errorf("verify: target %s is reached only through its SSH connection, which failed: %w", t.Name, err)
		default:
			run.Note = fmt.Sprintf("SSH to %s failed (%v): database and Redis are dialled from here, file permissions and system resources are not checked", t.Name, err)
		}
	}
	if env.Baseline == nil && h != nil && cfg.Snapshots.Enabled {
		if b, from, err := storeBaseline(ctx, cfg, req.Resolver, h); err == nil && b != nil {
			env.Baseline, run.BaselineFrom = b, from
		}
	}
	suite, err := checks.Verify(ctx, env, checks.Options{Deadline: cfg.Verification.Deadline.D()})
	if err != nil {
		return nil, fmt.Errorf("verify: the suite could not run: %w", err)
	}
	run.Suite = suite
	return run, nil
}

// storeBaseline is the baseline of the newest post-deploy snapshot taken
// of the release serving now, and that snapshot's name.
func storeBaseline(ctx context.Context, cfg *config.Config, res *config.Resolver, h *remote.Host) (checks.Baseline, string, error) {
	st, err := deploy.LoadState(h, deploy.PrimaryLayout(cfg))
	if err != nil {
		return nil, "", err
	}
	cur, ok := st.Current()
	if !ok {
		return nil, "", errors.New("no release serves")
	}
	store, err := snapshots.OpenStore(ctx, cfg, res, h)
	if err != nil {
		return nil, "", err
	}
	if c, ok := store.(interface{ Close() error }); ok {
		defer c.Close()
	}
	if b, id := baselineOf(ctx, store, cur.Image); b != nil {
		return b, "snapshot " + id, nil
	}
	return nil, "", nil
}
