package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/release"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// Deploy releases the application to every target, with snapshots, verification and automatic rollback.
//
// Without --backend-image it first builds from the module's source: the
// backend image and the frontend in parallel, the migration rehearsal on a
// copy of the newest snapshot's database (--skip-rehearsal skips it), then
// both images published tagged with --git-sha. Then, under the deploy lock
// on each target: a pre-deploy snapshot (database dump, serving image
// tagged snapshot-<id>, frontend, configuration), pull the backend image by
// digest, run migrations, start the new backend beside the old one,
// health-gate it, upload the changed frontend files, switch nginx (backend
// and frontend together), run the verification suite with a watch window,
// then a post-deploy snapshot; a failure or a rollback trigger puts the
// previous release back, and the database too when the migrations changed
// it. Builds and rehearsal run before the lock is taken: a broken build
// never holds production's lock. Prints the run's progress, the
// verification table and, as its last line, the JSON outcome.
// +cache="never"
func (m *LawskerDeploy) Deploy(
	ctx context.Context,
	// A prebuilt backend image pinned by digest (REGISTRY/REPO@sha256:...); skips the builds.
	// +optional
	backendImage string,
	// Prebuilt frontend files (with --backend-image).
	// +optional
	frontend *dagger.Directory,
	// The commit the built images are tagged with (e.g. $GITHUB_SHA).
	// +optional
	gitSha string,
	// Do not rehearse the migrations before deploying.
	// +optional
	skipRehearsal bool,
	// What this release is, for the history and the lock.
	// +optional
	message string,
	// Deploy without the pre- and post-deploy snapshots.
	// +optional
	noSnapshot bool,
	// Deploy even when the same release already serves.
	// +optional
	force bool,
	// Print the verification as Markdown (for a GitHub job summary) instead of a table.
	// +optional
	markdown bool,
	// Wait up to this long for a held deploy lock (in the target's queue, oldest first) instead of failing at once, e.g. 10m.
	// +optional
	lockWait string,
	// With --lock-wait: replace every older deploy of the app waiting for the lock (a burst of pushes deploys only the last).
	// +optional
	supersede bool,
	// Targets (comma-separated names) the deploy goes on without when they cannot be reached; never the first.
	// +optional
	skipUnreachable string,
	// With rollout.canary: stop after the analysis with both releases serving; promote or abort finishes it.
	// +optional
	canaryHold bool,
) (string, error) {
	var wait time.Duration
	if lockWait != "" {
		d, err := time.ParseDuration(lockWait)
		if err != nil || d <= 0 {
			return "", fmt.Errorf("deploy: --lock-wait %q is not a positive duration (10m, 1h)", lockWait)
		}
		wait = d
	}
	if supersede && wait == 0 {
		return "", errors.New("deploy: --supersede needs --lock-wait (a deploy replaces others only while they wait)")
	}
	if backendImage == "" && frontend != nil {
		return "", errors.New("deploy: --frontend goes with --backend-image (prebuilt artifacts); without them deploy builds both from the module's source")
	}
	if backendImage != "" {
		cfg, err := m.loadConfig(ctx)
		if err != nil {
			return "", err
		}
		switch {
		case cfg.Frontend != nil && frontend == nil:
			return "", errors.New("deploy: the configuration has a frontend: pass its built files with --frontend=DIR beside --backend-image, or leave out --backend-image to build both from the module's source")
		case cfg.Frontend == nil && frontend != nil:
			return "", errors.New("deploy: --frontend given, but the configuration has no frontend section")
		}
	}
	env, err := m.env(ctx, usesStore(!noSnapshot))
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	env.markdown = markdown
	return m.deploy(ctx, env, deployArgs{backendImage: backendImage, frontend: frontend, gitSha: gitSha, skipRehearsal: skipRehearsal,
		message: message, noSnapshot: noSnapshot, force: force, lockWait: wait, supersede: supersede, skipUnreachable: splitNames(skipUnreachable), canaryHold: canaryHold})
}

// splitNames splits a comma-separated list, dropping empty names.
func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// deployArgs are Deploy's arguments.
type deployArgs struct {
	backendImage, gitSha, message string
	frontend                      *dagger.Directory
	skipRehearsal, noSnapshot     bool
	force, supersede              bool
	lockWait                      time.Duration
	skipUnreachable               []string
	canaryHold                    bool
}

// deploy is Deploy on a prepared run (the end-to-end check prepares its own).
func (m *LawskerDeploy) deploy(ctx context.Context, env *runEnv, a deployArgs) (string, error) {
	var prelude string
	var err error
	if a.backendImage == "" {
		a.backendImage, a.frontend, prelude, err = m.buildAndPublish(ctx, env, a.gitSha, a.skipRehearsal)
		if err != nil {
			return "", failed("deploy", err, prelude)
		}
	}
	frontendDir := ""
	if a.frontend != nil {
		dir, err := os.MkdirTemp("", "lawsker-frontend-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		if err := copyDirectory(ctx, a.frontend, dir); err != nil {
			return "", fmt.Errorf("deploy: --frontend: %w", err)
		}
		frontendDir = dir
	}
	id := report.NewID(time.Now())
	r, err := rollout.Prepare(rollout.Request{Deploy: deploy.Request{Config: env.cfg, Resolver: env.res, Image: a.backendImage, FrontendDir: frontendDir,
		Message: a.message, Who: "dagger@" + hostname(), ID: id, NoSnapshot: a.noSnapshot, Force: a.force, LockWait: a.lockWait, Supersede: a.supersede, SkipUnreachable: a.skipUnreachable, CanaryHold: a.canaryHold}})
	if err != nil {
		return "", failed("deploy", env.red.Error(err), prelude)
	}
	defer r.Close()
	text, err := env.runRelease(ctx, "deploy", id, release.Deploy(r))
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, prelude)
	}
	return prelude + text, nil
}

// buildAndPublish builds the backend and frontend in parallel, rehearses
// the migrations, publishes both images and returns the backend reference
// pinned by digest, the built frontend and what it printed (also when it
// fails: what was done before).
func (m *LawskerDeploy) buildAndPublish(ctx context.Context, env *runEnv, gitSha string, skipRehearsal bool) (string, *dagger.Directory, string, error) {
	cfg := env.cfg
	backend, plan, err := buildBackend(ctx, m.Source, cfg)
	if err != nil {
		return "", nil, "", err
	}
	var front *dagger.Directory
	var wg sync.WaitGroup
	var berr, ferr error
	wg.Add(1)
	go func() { // the backend image is built while the frontend builds below
		defer wg.Done()
		_, berr = backend.Sync(ctx)
	}()
	if cfg.Frontend != nil {
		if front, ferr = buildFrontend(ctx, m.Source, cfg); ferr == nil {
			_, ferr = front.Sync(ctx)
		}
	}
	wg.Wait()
	if err := errors.Join(berr, ferr); err != nil {
		return "", nil, "", fmt.Errorf("build: %w", err)
	}
	out := fmt.Sprintf("backend built (%s recipe from %s)\n", plan.Recipe, plan.Context)
	if !skipRehearsal {
		text, err := rehearse(ctx, env, backend, "", false, "deploy --skip-rehearsal deploys without the rehearsal")
		if err != nil {
			return "", nil, env.red.String(out), err
		}
		out += text
	}
	var password *dagger.Secret
	if reg := cfg.Registry; reg != nil && reg.Username != "" {
		pw, err := env.res.Resolve(reg.Password)
		if err != nil {
			return "", nil, env.red.String(out), fmt.Errorf("registry.password: %w", err)
		}
		password = dag.SetSecret("lawsker-registry-password", pw)
	}
	refs, err := publish(ctx, m.Source, cfg, backend, front, password, gitSha)
	if err != nil {
		return "", nil, env.red.String(out), err
	}
	out += "published " + strings.Join(refs, ", ") + "\n"
	return refs[0], front, env.red.String(out), nil
}

// Rollback puts a previous state back: the warm previous release, or a snapshot's release and database.
//
// With --previous: every target switches back to its warm previous release
// (refused, unless --force, when the database's schema is not the one it
// ran on; kept running for backend.rollback_window after a deploy). With
// --snapshot=ID: the plan first (components, steps, risk, estimated
// duration), then the snapshot's release (image by digest, frontend,
// configuration) deployed health-gated and, when its schema fingerprint
// differs from now or --components asks, its database restored into a
// fresh one and swapped in; then verification. Checksums are verified
// before anything changes.
// +cache="never"
func (m *LawskerDeploy) Rollback(
	ctx context.Context,
	// Switch back to the warm previous release.
	// +optional
	previous bool,
	// Roll back to this snapshot (snap_YYYYMMDD_HHMMSS_xxxxxx).
	// +optional
	snapshot string,
	// With --snapshot: what to restore, of backend,frontend,config,database,tls,monitoring (default: the release, and the database when its schema differs from now).
	// +optional
	components string,
	// With --snapshot: print the plan, change nothing.
	// +optional
	dryRun bool,
	// With --previous: switch even when the database's schema is not the one the previous release ran on.
	// +optional
	force bool,
	// Print the verification as Markdown (for a GitHub job summary) instead of a table.
	// +optional
	markdown bool,
) (string, error) {
	if previous == (snapshot != "") {
		return "", errors.New("rollback: pass --previous (the warm previous release) or --snapshot=ID (a snapshot's release and, when needed, its database)")
	}
	env, err := m.env(ctx, usesStore(snapshot != ""))
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	env.markdown = markdown
	return rollback(ctx, env, rollbackArgs{previous: previous, snapshot: snapshot, components: components, dryRun: dryRun, force: force})
}

// rollbackArgs are Rollback's arguments.
type rollbackArgs struct {
	previous, dryRun, force bool
	snapshot, components    string
}

// rollback is Rollback on a prepared run.
func rollback(ctx context.Context, env *runEnv, a rollbackArgs) (string, error) {
	previous, snapshot, components, dryRun, force := a.previous, a.snapshot, a.components, a.dryRun, a.force
	id := report.NewID(time.Now())
	if previous {
		d, err := rollout.PrepareSwitchBack(deploy.Request{Config: env.cfg, Resolver: env.res, Who: "dagger@" + hostname(), ID: id}, force)
		if err != nil {
			return "", failed("rollback", env.red.Error(err), "")
		}
		defer d.Close()
		return env.runRelease(ctx, "rollback", id, release.SwitchBack(d))
	}
	store, err := rollout.OpenStore(ctx, env.cfg, env.res)
	if err != nil {
		return "", failed("rollback", env.red.Error(err), "")
	}
	defer store.Close()
	var asked []string
	if components != "" {
		asked = strings.Split(components, ",")
	}
	snap, plan, err := rollout.PlanFor(ctx, env.cfg, env.res, store, snapshot, asked)
	if err != nil {
		return "", failed("rollback", env.red.Error(err), "")
	}
	planJSON, _ := json.MarshalIndent(plan, "", "  ")
	if dryRun {
		return env.red.String(string(planJSON)) + "\ndry run: nothing changed\n", nil
	}
	work, err := os.MkdirTemp("", "lawsker-rollback-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	r, err := rollout.PrepareRestore(ctx, rollout.RestoreRequest{Config: env.cfg, Resolver: env.res, Store: store.Store, Manifest: snap, Plan: plan,
		ID: id, Who: "dagger@" + hostname(), WorkDir: work})
	if err != nil {
		return "", failed("rollback", env.red.Error(err), "")
	}
	defer r.Close()
	text, err := env.runRelease(ctx, "rollback", id, release.Rollback(r, plan))
	if err != nil {
		return "", fmt.Errorf("%w\nrollback plan:\n%s", err, env.red.String(string(planJSON)))
	}
	return env.red.String("rollback plan:\n"+string(planJSON)+"\n") + text, nil
}

// Promote finishes a canary held by deploy --canary-hold: every client on the new release, the release kept, the lock released.
// +cache="never"
func (m *LawskerDeploy) Promote(ctx context.Context) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	held, err := rollout.Promote(ctx, env.cfg, env.res)
	data, _ := json.MarshalIndent(held, "", "  ")
	text := env.red.String(string(data)) + "\n"
	if err != nil {
		return "", failed("promote", env.red.Error(err), text)
	}
	return text, nil
}

// Abort ends a canary held by deploy --canary-hold: the previous release serves every client again, the new one is removed, the database restored when the release changed it.
// +cache="never"
func (m *LawskerDeploy) Abort(ctx context.Context) (string, error) {
	env, err := m.env(ctx, true)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	r, err := rollout.PrepareAbort(ctx, env.cfg, env.res, "dagger@"+hostname(), deploy.Request{})
	if err != nil {
		return "", failed("abort", env.red.Error(err), "")
	}
	defer r.Close()
	return env.runRelease(ctx, "abort", r.Deployment().ID(), release.Abort(r))
}
