// Lawsker-deploy: deploy, verify, snapshot and roll back a web application
// whose database travels with the release.
//
// This file is the Dagger layer: thin functions that parse arguments, build
// containers and call the plain packages (config, deploy, pipelines, ...),
// which are tested with `go test` against real servers. Every function here
// is also a `lawsker-deploy` subcommand of the static binary.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/checks"
	cfgpkg "github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/progress"
	"github.com/lawsker/lawsker-deploy/redact"
	"github.com/lawsker/lawsker-deploy/release"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// goImage is the toolchain image of the module's own checks; it matches the
// go line of go.mod.
const goImage = "golang:1.26-bookworm"

// LawskerDeploy is the module.
type LawskerDeploy struct{}

// Validate checks a deployment configuration and prints a summary. Every
// problem is reported at once, each with its path and line
// (`targets[0].ssh.port: must be 1-65535, got 70000 (line 12)`); unknown keys
// are rejected. Lawsker's legacy deployment_config.json is read too.
// Secret references are listed, not resolved: the engine does not see the
// host's environment (deploy takes secrets as arguments).
func (m *LawskerDeploy) Validate(
	ctx context.Context,
	// the configuration file (deploy.json, or Lawsker's deployment_config.json)
	config *dagger.File,
) (string, error) {
	l, err := loadConfig(ctx, config)
	if err != nil {
		return "", err
	}
	var notes strings.Builder
	for _, n := range l.Notes {
		notes.WriteString("note: " + n + "\n")
	}
	return fmt.Sprintf("valid (%s format)\n%s%s", l.Format, l.Config.Summary(nil), notes.String()), nil
}

// Plan shows the deployment DAG that deploy runs for a configuration: stage
// by stage, which steps run in parallel, their timeouts and retries, and
// what happens on failure.
func (m *LawskerDeploy) Plan(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// print the plan as JSON
	// +optional
	asJSON bool,
) (string, error) {
	l, err := loadConfig(ctx, config)
	if err != nil {
		return "", err
	}
	p, err := deploy.NewPlan(l.Config)
	if err != nil {
		return "", err
	}
	if asJSON {
		return p.JSON()
	}
	return p.Text(), nil
}

// Preflight checks that deploy can reach what it needs from the engine:
// every secret reference resolves, every target accepts the SSH key with its
// host key matching known_hosts, and the registry answers. Read-only.
// Secrets are passed as a list and matched to the configuration's
// references by their source: env://NAME feeds env:NAME, file://PATH feeds
// file:PATH.
// +cache="never"
func (m *LawskerDeploy) Preflight(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// secrets the configuration references, e.g.
	// env://REGISTRY_PASSWORD,file://./.ssh/id_ed25519
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target (the configuration's known_hosts paths
	// are on your machine, not in the engine)
	// +optional
	knownHosts *dagger.File,
) (string, error) {
	env, err := newRunEnv(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	g, err := deploy.Preflight(env.cfg, env.res)
	if err != nil {
		return "", err
	}
	text, err := env.run(ctx, g, nil)
	if err != nil {
		return "", fmt.Errorf("preflight failed:\n%w", err)
	}
	return text, nil
}

// Deploy releases the application to every target. Without
// --backend-image it first builds from the source: the backend image and
// the frontend in parallel, the migration rehearsal on a copy of the
// newest snapshot's database (--skip-rehearsal skips it), then both images
// published tagged with --git-sha. Then, under the deploy lock on each
// target: a pre-deploy snapshot (database dump, serving image tagged
// snapshot-<id>, frontend, configuration), pull the backend image by
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
	// the configuration file
	config *dagger.File,
	// the application's source, built when no --backend-image is given
	// +defaultPath="/"
	// +ignore=[".git", "**/node_modules", "**/__pycache__", "**/.venv", "**/dist", "**/build", ".cache", "bin", "reports", "logs"]
	source *dagger.Directory,
	// a prebuilt backend image pinned by digest (REGISTRY/REPO@sha256:...); skips the builds
	// +optional
	backendImage string,
	// prebuilt frontend files (with --backend-image)
	// +optional
	frontend *dagger.Directory,
	// the commit the built images are tagged with (e.g. $GITHUB_SHA)
	// +optional
	gitSha string,
	// do not rehearse the migrations before deploying
	// +optional
	skipRehearsal bool,
	// what this release is, for the history and the lock
	// +optional
	message string,
	// secrets the configuration references (env://NAME, file://PATH)
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target
	// +optional
	knownHosts *dagger.File,
	// deploy without the pre- and post-deploy snapshots
	// +optional
	noSnapshot bool,
	// deploy even when the same release already serves
	// +optional
	force bool,
	// print the verification as Markdown (for a GitHub job summary) instead of a table
	// +optional
	markdown bool,
) (string, error) {
	env, err := newRunEnv(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	env.markdown = markdown
	var prelude string
	if backendImage == "" {
		if frontend != nil {
			return "", errors.New("--frontend goes with --backend-image (prebuilt artifacts); without them deploy builds both from --source")
		}
		backendImage, frontend, prelude, err = buildAndPublish(ctx, env, source, gitSha, skipRehearsal)
		if err != nil {
			return "", err
		}
	}
	frontendDir := ""
	if frontend != nil {
		dir, err := os.MkdirTemp("", "lawsker-frontend-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		if err := copyDirectory(ctx, frontend, dir); err != nil {
			return "", fmt.Errorf("frontend: %w", err)
		}
		frontendDir = dir
	}
	id := report.NewID(time.Now())
	r, err := rollout.Prepare(rollout.Request{Deploy: deploy.Request{Config: env.cfg, Resolver: env.res, Image: backendImage, FrontendDir: frontendDir,
		Message: message, Who: "dagger@" + hostname(), ID: id, NoSnapshot: noSnapshot, Force: force}})
	if err != nil {
		return "", err
	}
	defer r.Close()
	text, err := env.runRelease(ctx, id, release.Deploy(r))
	if err != nil {
		return "", fmt.Errorf("%s%w", prelude, err)
	}
	return prelude + text, nil
}

// buildAndPublish builds the backend and frontend in parallel, rehearses
// the migrations, publishes both images and returns the backend reference
// pinned by digest, the built frontend and what it printed.
func buildAndPublish(ctx context.Context, env *runEnv, source *dagger.Directory, gitSha string, skipRehearsal bool) (string, *dagger.Directory, string, error) {
	cfg := env.cfg
	backend, plan, err := buildBackend(ctx, source, cfg)
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
		if front, ferr = buildFrontend(ctx, source, cfg); ferr == nil {
			_, ferr = front.Sync(ctx)
		}
	}
	wg.Wait()
	if err := errors.Join(berr, ferr); err != nil {
		return "", nil, "", fmt.Errorf("build: %w", err)
	}
	out := fmt.Sprintf("backend built (%s recipe from %s)\n", plan.Recipe, plan.Context)
	if !skipRehearsal {
		text, err := rehearse(ctx, env, backend, "", false)
		if err != nil {
			return "", nil, "", err
		}
		out += text
	}
	var password *dagger.Secret
	if reg := cfg.Registry; reg != nil && reg.Username != "" {
		pw, err := env.res.Resolve(reg.Password)
		if err != nil {
			return "", nil, "", fmt.Errorf("registry.password: %w", err)
		}
		password = dag.SetSecret("lawsker-registry-password", pw)
	}
	refs, err := publish(ctx, source, cfg, backend, front, password, gitSha)
	if err != nil {
		return "", nil, "", err
	}
	out += "published " + strings.Join(refs, ", ") + "\n"
	return refs[0], front, env.red.String(out), nil
}

// Rollback puts a previous state back. With --previous: every target
// switches back to its warm previous release (refused, unless --force, when the
// database's schema is not the one it ran on; kept running for
// backend.rollback_window after a deploy). With --snapshot=ID: the plan
// first (components, steps, risk, estimated duration), then the snapshot's
// release (image by digest, frontend, configuration) deployed health-gated
// and, when its schema fingerprint differs from now or --components asks, its
// database restored into a fresh one and swapped in; then verification.
// Checksums are verified before anything changes.
// +cache="never"
func (m *LawskerDeploy) Rollback(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// switch back to the warm previous release
	// +optional
	previous bool,
	// roll back to this snapshot (snap_YYYYMMDD_HHMMSS_xxxxxx)
	// +optional
	snapshot string,
	// with --snapshot: what to restore, of backend,frontend,config,database,tls,monitoring
	// (default: the release, and the database when its schema differs from now)
	// +optional
	components string,
	// with --snapshot: print the plan, change nothing
	// +optional
	dryRun bool,
	// with --previous: switch even when the database's schema is not the one the previous release ran on
	// +optional
	force bool,
	// secrets the configuration references (env://NAME, file://PATH)
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target
	// +optional
	knownHosts *dagger.File,
	// print the verification as Markdown (for a GitHub job summary) instead of a table
	// +optional
	markdown bool,
) (string, error) {
	if previous == (snapshot != "") {
		return "", errors.New("rollback: pass --previous (the warm previous release) or --snapshot=ID (a snapshot's release and, when needed, its database)")
	}
	env, err := newRunEnv(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	env.markdown = markdown
	id := report.NewID(time.Now())
	if previous {
		d, err := rollout.PrepareSwitchBack(deploy.Request{Config: env.cfg, Resolver: env.res, Who: "dagger@" + hostname(), ID: id}, force)
		if err != nil {
			return "", err
		}
		defer d.Close()
		return env.runRelease(ctx, id, release.SwitchBack(d))
	}
	store, err := rollout.OpenStore(ctx, env.cfg, env.res)
	if err != nil {
		return "", env.red.Error(err)
	}
	defer store.Close()
	var asked []string
	if components != "" {
		asked = strings.Split(components, ",")
	}
	snap, plan, err := rollout.PlanFor(ctx, env.cfg, env.res, store, snapshot, asked)
	if err != nil {
		return "", env.red.Error(err)
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
		return "", env.red.Error(err)
	}
	defer r.Close()
	text, err := env.runRelease(ctx, id, release.Rollback(r, plan))
	return env.red.String("rollback plan:\n"+string(planJSON)+"\n") + text, err
}

// Snapshot takes a snapshot of the serving release and its database: the
// PostgreSQL dump (pg_dump -Fc on the target, streamed to the store,
// encrypted with age when snapshots.age_recipient is set), the image tagged
// <repo>:snapshot-<id> by digest, the frontend as a tarball and the
// configuration. Returns the manifest as JSON.
// +cache="never"
func (m *LawskerDeploy) Snapshot(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// what this snapshot is for
	// +optional
	description string,
	// secrets the configuration references (env://NAME, file://PATH)
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target
	// +optional
	knownHosts *dagger.File,
) (string, error) {
	env, store, err := openSnapshotStore(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	defer store.Close()
	man, err := rollout.Snapshot(ctx, env.cfg, env.res, store, description)
	if err != nil {
		return "", env.red.Error(err)
	}
	data, _ := json.MarshalIndent(man, "", "  ")
	return env.red.String(string(data)) + "\n", nil
}

// Snapshots lists the snapshots in the store, newest first, as JSON
// manifests (unreadable ones are reported after the list).
// +cache="never"
func (m *LawskerDeploy) Snapshots(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// secrets the configuration references (env://NAME, file://PATH)
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target
	// +optional
	knownHosts *dagger.File,
) (string, error) {
	env, store, err := openSnapshotStore(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	defer store.Close()
	ms, errs := snapshots.List(ctx, store.Store)
	data, _ := json.MarshalIndent(ms, "", "  ")
	text := string(data) + "\n"
	for _, e := range errs {
		text += "warning: " + e.Error() + "\n"
	}
	return env.red.String(text), nil
}

// DeleteSnapshot removes a snapshot from the store (its manifest first, so
// a half-deleted snapshot never looks whole).
// +cache="never"
func (m *LawskerDeploy) DeleteSnapshot(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// the snapshot to delete (snap_YYYYMMDD_HHMMSS_xxxxxx)
	id string,
	// secrets the configuration references (env://NAME, file://PATH)
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target
	// +optional
	knownHosts *dagger.File,
) (string, error) {
	env, store, err := openSnapshotStore(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	defer store.Close()
	if _, err := snapshots.Load(ctx, store.Store, id); err != nil {
		return "", err
	}
	if err := snapshots.Delete(ctx, store.Store, id); err != nil {
		return "", env.red.Error(err)
	}
	return "deleted " + id + "\n", nil
}

func openSnapshotStore(ctx context.Context, config *dagger.File, secrets []*dagger.Secret, knownHosts *dagger.File) (*runEnv, *rollout.Store, error) {
	env, err := newRunEnv(ctx, config, secrets, knownHosts)
	if err != nil {
		return nil, nil, err
	}
	store, err := rollout.OpenStore(ctx, env.cfg, env.res)
	if err != nil {
		env.cleanup()
		return nil, nil, env.red.Error(err)
	}
	return env, store, nil
}

// runEnv is what every function that reaches targets needs: the
// configuration, its secrets resolved from Dagger secrets (and registered
// with a redactor), known_hosts written where the targets read it.
type runEnv struct {
	markdown bool // verification as Markdown instead of a table
	cfg      *cfgpkg.Config
	red      *redact.Redactor
	res      *cfgpkg.Resolver
	cleanup  func()
}

func newRunEnv(ctx context.Context, config *dagger.File, secrets []*dagger.Secret, knownHosts *dagger.File) (*runEnv, error) {
	l, err := loadConfig(ctx, config)
	if err != nil {
		return nil, err
	}
	red, res, err := resolverFrom(ctx, secrets)
	if err != nil {
		return nil, err
	}
	cleanup, err := useKnownHosts(ctx, knownHosts, l.Config)
	if err != nil {
		return nil, err
	}
	return &runEnv{cfg: l.Config, red: red, res: res, cleanup: cleanup}, nil
}

// run runs a graph with plain progress lines (then suffix); on failure the
// error carries the lines and the masked error.
func (e *runEnv) run(ctx context.Context, g *pipelines.Graph, suffix func() string) (string, error) {
	var out strings.Builder
	w := e.red.NewWriter(&out)
	result := pipelines.Run(ctx, g, pipelines.Options{
		MaxWorkers: e.cfg.Execution.MaxWorkers, Serial: !e.cfg.Execution.Parallel, ContinueOnFailure: true,
		DefaultTimeout: e.cfg.Execution.StepTimeout.D(), Observer: progress.NewPlain(w),
	})
	_ = w.Flush()
	text := out.String()
	if suffix != nil {
		text += e.red.String(suffix())
	}
	if err := result.Err(); err != nil {
		return "", fmt.Errorf("%s%w", text, e.red.Error(err))
	}
	return text, nil
}

// runRelease runs a deploy or rollback through the release session the
// CLI runs too (package release), and renders it: the steps as they ran,
// the verification, and the outcome as JSON.
func (e *runEnv) runRelease(ctx context.Context, id string, rel release.Release) (string, error) {
	var out strings.Builder
	w := e.red.NewWriter(&out)
	r := release.Run(ctx, release.Request{Config: e.cfg, Resolver: e.res, ID: id, Who: "dagger@" + hostname(), Observer: progress.NewPlain(w), Mask: e.red.String}, rel)
	_ = w.Flush()
	if v := r.Outcome.Verification; v != nil && e.markdown {
		out.WriteString(e.red.String(checks.Markdown(v, fmt.Sprintf("Verification of %s (%s)", e.cfg.App, e.cfg.Environment))))
	} else if v != nil {
		out.WriteString(e.red.String(checks.Table(v)))
	}
	data, _ := json.Marshal(map[string]any{"id": id, "targets": r.Targets, "outcome": r.Outcome, "notifications": r.Notifications})
	text := out.String() + e.red.String(string(data)) + "\n"
	if r.Err != nil {
		return "", fmt.Errorf("%s%w", text, e.red.Error(r.Err))
	}
	return text, nil
}

// resolverFrom feeds the configuration's secret references from Dagger
// secrets, matched by their source (env://NAME -> env:NAME, file://PATH ->
// file:PATH), and registers every value with a redactor.
func resolverFrom(ctx context.Context, secrets []*dagger.Secret) (*redact.Redactor, *cfgpkg.Resolver, error) {
	red := redact.New()
	res := &cfgpkg.Resolver{Provided: map[string]string{}, OnResolve: func(v string) { red.Add(v) },
		LookupEnv: func(string) (string, bool) { return "", false }}
	for i, s := range secrets {
		uri, err := s.URI(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("secrets[%d]: %w", i, err)
		}
		ref, err := cfgpkg.RefForURI(uri)
		if err != nil {
			return nil, nil, fmt.Errorf("secrets[%d]: %w", i, err)
		}
		value, err := s.Plaintext(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("secrets[%d] (%s): %w", i, ref, err)
		}
		red.Add(value)
		res.Provided[string(ref)] = value
	}
	return red, res, nil
}

// useKnownHosts writes the given known_hosts where every target reads it
// (the configuration's paths are on the caller's machine, not here).
func useKnownHosts(ctx context.Context, knownHosts *dagger.File, cfg *cfgpkg.Config) (func(), error) {
	if knownHosts == nil {
		return func() {}, nil
	}
	contents, err := knownHosts.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("known-hosts: %w", err)
	}
	dir, err := os.MkdirTemp("", "lawsker-deploy-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("known-hosts: %w", err)
	}
	for i := range cfg.Targets {
		cfg.Targets[i].SSH.KnownHosts = path
	}
	return func() { os.RemoveAll(dir) }, nil
}

// copyDirectory writes a Dagger directory's regular files under dest.
func copyDirectory(ctx context.Context, src *dagger.Directory, dest string) error {
	paths, err := src.Glob(ctx, "**")
	if err != nil {
		return err
	}
	for _, p := range paths {
		isFile, err := src.Exists(ctx, p, dagger.DirectoryExistsOpts{ExpectedType: dagger.ExistsTypeRegularType, DoNotFollowSymlinks: true})
		if err != nil {
			return err
		}
		if !isFile {
			continue
		}
		data, err := src.File(p).Contents(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		target := filepath.Join(dest, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "engine"
	}
	return h
}

// Verify runs the verification suite (health, functional, performance,
// security) against a deployment and prints a table and a Markdown summary.
// Fails when a check fails. With the first target's SSH key among the
// secrets, the database and Redis are reached through its tunnel and file
// permissions are checked.
// +cache="never"
func (m *LawskerDeploy) Verify(
	ctx context.Context,
	// the configuration file
	config *dagger.File,
	// URL to verify (default: verification.base_url, or derived)
	// +optional
	baseURL string,
	// comma-separated categories (default: verification.categories)
	// +optional
	category string,
	// secrets the configuration references (env://NAME, file://PATH)
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target
	// +optional
	knownHosts *dagger.File,
) (string, error) {
	env, err := newRunEnv(ctx, config, secrets, knownHosts)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	venv := checks.Env{Config: env.cfg, Resolver: env.res, BaseURL: baseURL}
	for _, c := range strings.Split(category, ",") {
		if c = strings.TrimSpace(c); c != "" {
			venv.Categories = append(venv.Categories, checks.Category(c))
		}
	}
	if e, err := deploy.Endpoint(env.cfg.Primary(), env.res); err == nil && len(e.PrivateKey) > 0 {
		if h, err := remote.Connect(ctx, e, 2); err == nil {
			defer h.Close()
			venv.Dial, venv.Stat, venv.System = h.DialTCP, h.StatGlob, h
		}
	}
	suite, err := checks.Verify(ctx, venv, checks.Options{Deadline: env.cfg.Verification.Deadline.D()})
	if err != nil {
		return "", err
	}
	text := env.red.String(checks.Table(suite) + "\n" + checks.Markdown(suite, "Verification of "+env.cfg.App))
	if suite.Failed() {
		return "", fmt.Errorf("verification failed:\n%s", text)
	}
	return text, nil
}

// ConfigImport converts Lawsker's legacy deployment_config.json into the
// native deploy.json. `${VAR}` references become secret references
// (env:VAR); a password written out in the legacy file is refused, never
// copied.
func (m *LawskerDeploy) ConfigImport(
	ctx context.Context,
	// Lawsker's deployment_config.json
	legacy *dagger.File,
	// application name
	// +default="lawsker"
	app string,
	// target host reached over SSH
	// +default="127.0.0.1"
	host string,
	// SSH user on the target
	// +default="deploy"
	user string,
	// backend image repository (default 127.0.0.1:5000/<app>/backend)
	// +optional
	image string,
) (*dagger.File, error) {
	data, err := legacy.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("config import: reading the legacy file: %w", err)
	}
	l, err := cfgpkg.ParseLegacy([]byte(data), cfgpkg.ImportOptions{App: app, Host: host, User: user, Image: image})
	if err != nil {
		return nil, err
	}
	l.Config.Schema = cfgpkg.SchemaURL
	out, err := cfgpkg.Marshal(l.Config)
	if err != nil {
		return nil, err
	}
	return dag.Directory().WithNewFile("deploy.json", string(out)).File("deploy.json"), nil
}

// ConfigSchema returns the JSON Schema of deploy.json, for editors.
func (m *LawskerDeploy) ConfigSchema() (*dagger.File, error) {
	data, err := cfgpkg.Schema()
	if err != nil {
		return nil, err
	}
	return dag.Directory().WithNewFile("deploy.schema.json", string(data)).File("deploy.schema.json"), nil
}

// Lint checks the module's own source: gofmt, go vet, the type-check of
// this Dagger layer against the pinned SDK, and actionlint over the GitHub
// workflows.
// +check
func (m *LawskerDeploy) Lint(
	ctx context.Context,
	// the module's source
	// +defaultPath="/"
	// +ignore=[".cache", "reports", "logs", "bin", "dagger.gen.go", "internal/dagger", "internal/querybuilder", "internal/telemetry"]
	source *dagger.Directory,
) error {
	_, err := goContainer(source).
		WithExec([]string{"go", "install", "github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"}).
		WithExec([]string{"bash", "scripts/lint.sh"}).Sync(ctx)
	return execErr("lint", err)
}

// Test runs the whole test suite (.ci/run: unit and integration tests
// against real PostgreSQL, Redis, Docker, sshd, nginx, registry, S3, ACME and
// Prometheus servers on loopback) in a privileged Debian container, the way
// CI runs it on a bare machine.
// +check
func (m *LawskerDeploy) Test(
	ctx context.Context,
	// the module's source
	// +defaultPath="/"
	// +ignore=[".cache", "reports", "logs", "bin", "dagger.gen.go", "internal/dagger", "internal/querybuilder", "internal/telemetry"]
	source *dagger.Directory,
) error {
	_, err := goContainer(source).
		WithMountedCache("/src/.cache/bin", dag.CacheVolume("lawsker-deploy-testenv-bin")).
		WithEnvVariable("CI", "true").
		WithExec([]string{"bash", ".ci/run"}, dagger.ContainerWithExecOpts{InsecureRootCapabilities: true}).
		Sync(ctx)
	return execErr("test", err)
}

// goContainer is the toolchain with the source mounted and Go caches.
func goContainer(source *dagger.Directory) *dagger.Container {
	return dag.Container().
		From(goImage).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume("lawsker-deploy-gomod")).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume("lawsker-deploy-gobuild")).
		WithMountedDirectory("/src", source).
		WithWorkdir("/src").
		WithEnvVariable("GOTOOLCHAIN", "local")
}

// execErr keeps the tail of a failed command's output in the error.
func execErr(what string, err error) error {
	var e *dagger.ExecError
	if errors.As(err, &e) {
		return fmt.Errorf("%s: exit %d\n%s", what, e.ExitCode, tail(e.Stdout+"\n"+e.Stderr, 60))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func loadConfig(ctx context.Context, f *dagger.File) (*cfgpkg.Loaded, error) {
	data, err := f.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("config: reading the file: %w", err)
	}
	return cfgpkg.Parse([]byte(data), cfgpkg.ImportOptions{})
}
