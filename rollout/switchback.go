package rollout

import (
	"context"
	"fmt"
	"slices"

	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// PrepareSwitchBack is deploy.PrepareSwitchBack with the schema check:
// the warm previous release is switched to only when the database's schema
// is the one it ran on (recorded in state.json when it was deployed). Else
// the switch is refused, naming the `rollback --snapshot` that brings its
// code back with its database; force switches anyway (with a warning).
func PrepareSwitchBack(req deploy.Request, force bool) (*deploy.Deployment, error) {
	req.Hooks.BeforeSwitchBack = func(ctx context.Context, h *remote.Host, to deploy.Release) error {
		return checkSwitchBack(ctx, h, req, to, force)
	}
	return deploy.PrepareSwitchBack(req)
}

func checkSwitchBack(ctx context.Context, h *remote.Host, req deploy.Request, to deploy.Release, force bool) error {
	if req.Config.Database == nil {
		return nil
	}
	now, err := deploy.LiveSchema(ctx, h, req)
	if err == nil && dbschema.Same(to.Schema, now) {
		return nil
	}
	what := "the database's " + dbschema.Change(to.Schema, now) + " (what " + to.ID + " ran on -> now)"
	switch {
	case err != nil:
		what = fmt.Sprintf("the database's schema cannot be read (%v)", err)
	case to.Schema == nil:
		what = "the schema release " + to.ID + " ran on was not recorded (deployed by an older lawsker-deploy, or unreadable then)"
	}
	if force {
		if req.Logger == nil {
			return nil
		}
		req.Logger.Warn("switching back with --force although the schema may differ", "release", to.ID, "schema", what)
		return nil
	}
	return fmt.Errorf("not switched: %s, so %s's code would run on a schema it was not deployed with. %s; or pass --force to switch anyway",
		what, to.ID, suggestSnapshot(ctx, h, req, to))
}

// suggestSnapshot names the snapshot that holds to's code with the
// database as it ran on it (the newest one; one with its backend image
// first).
func suggestSnapshot(ctx context.Context, h *remote.Host, req deploy.Request, to deploy.Release) string {
	store, err := snapshots.OpenStore(ctx, req.Config, req.Resolver, h)
	if err != nil {
		return fmt.Sprintf("The snapshot store cannot be read (%v): find a snapshot of release %s with `lawsker-deploy snapshot list` and run `lawsker-deploy rollback --snapshot ID`", err, to.ID)
	}
	list, _ := snapshots.List(ctx, store)
	var best *snapshots.Manifest
	score := func(m *snapshots.Manifest) int {
		if m.Release != to.ID || m.Database == nil || !slices.Contains(m.Components, snapshots.ComponentDatabase) {
			return 0
		}
		s := 1
		if dbschema.Same(m.Database.Schema, to.Schema) {
			s += 2
		}
		if slices.Contains(m.Components, snapshots.ComponentBackend) {
			s++
		}
		return s
	}
	for _, m := range list { // newest first
		if score(m) > 0 && (best == nil || score(m) > score(best)) {
			best = m
		}
	}
	if best == nil {
		return "No snapshot holds release " + to.ID + " with its database (`lawsker-deploy snapshot list`)"
	}
	return fmt.Sprintf("Run `lawsker-deploy rollback --snapshot %s` (release %s with its database, %s)", best.ID, to.ID, best.Database.Schema.Describe())
}
