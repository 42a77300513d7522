package main

import (
	"context"
	"encoding/json"

	"github.com/lawsker/lawsker-deploy/rollout"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// Snapshot takes a snapshot of the serving release and its database; prints the manifest as JSON.
//
// The PostgreSQL dump (pg_dump -Fc on the target, streamed to the store,
// encrypted with age when snapshots.age_recipient is set), the image tagged
// <repo>:snapshot-<id> by digest, the frontend as a tarball and the
// configuration.
// +cache="never"
func (m *LawskerDeploy) Snapshot(
	ctx context.Context,
	// What this snapshot is for.
	// +optional
	description string,
) (string, error) {
	return m.withStore(ctx, "snapshot", func(env *runEnv, store *rollout.Store) (string, error) {
		man, err := rollout.Snapshot(ctx, env.cfg, env.res, store, description)
		if err != nil {
			return "", err
		}
		data, _ := json.MarshalIndent(man, "", "  ")
		return string(data) + "\n", nil
	})
}

// Snapshots lists the snapshots in the store, newest first, as JSON manifests.
//
// Unreadable manifests are reported after the list.
// +cache="never"
func (m *LawskerDeploy) Snapshots(ctx context.Context) (string, error) {
	return m.withStore(ctx, "snapshots", func(_ *runEnv, store *rollout.Store) (string, error) {
		ms, errs := snapshots.List(ctx, store.Store)
		data, _ := json.MarshalIndent(ms, "", "  ")
		text := string(data) + "\n"
		for _, e := range errs {
			text += "warning: " + e.Error() + "\n"
		}
		return text, nil
	})
}

// DeleteSnapshot removes a snapshot from the store.
//
// Its manifest goes first, so a half-deleted snapshot never looks whole.
// +cache="never"
func (m *LawskerDeploy) DeleteSnapshot(
	ctx context.Context,
	// The snapshot to delete (snap_YYYYMMDD_HHMMSS_xxxxxx).
	id string,
) (string, error) {
	return m.withStore(ctx, "delete-snapshot", func(_ *runEnv, store *rollout.Store) (string, error) {
		if _, err := snapshots.Load(ctx, store.Store, id); err != nil {
			return "", err
		}
		if err := snapshots.Delete(ctx, store.Store, id); err != nil {
			return "", err
		}
		return "deleted " + id + "\n", nil
	})
}

// withStore runs f with the snapshot store open; its output and error are
// masked.
func (m *LawskerDeploy) withStore(ctx context.Context, verb string, f func(*runEnv, *rollout.Store) (string, error)) (string, error) {
	env, err := m.env(ctx, true)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	store, err := rollout.OpenStore(ctx, env.cfg, env.res)
	if err != nil {
		return "", failed(verb, env.red.Error(err), "")
	}
	defer store.Close()
	out, err := f(env, store)
	if err != nil {
		return "", failed(verb, env.red.Error(err), "")
	}
	return env.red.String(out), nil
}
