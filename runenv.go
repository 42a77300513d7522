package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lawsker/lawsker-deploy/checks"
	cfgpkg "github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/modargs"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/progress"
	"github.com/lawsker/lawsker-deploy/redact"
	"github.com/lawsker/lawsker-deploy/release"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// runEnv is what every function that reaches targets needs: the
// configuration, its secrets (registered with a redactor), known_hosts
// written where the targets read it, and the targets reached through
// their services.
type runEnv struct {
	markdown bool // verification as Markdown instead of a table
	cfg      *cfgpkg.Config
	red      *redact.Redactor
	res      *cfgpkg.Resolver
	cleanup  func()
}

// usesStore says a function keeps or reads snapshots: a store inside the
// function's container is refused before anything runs.
type usesStore bool

// env prepares a run: nothing reaches a target before every input checked.
func (m *LawskerDeploy) env(ctx context.Context, store usesStore) (*runEnv, error) {
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	if store {
		if err := modargs.CheckStore(cfg); err != nil {
			return nil, err
		}
	}
	if err := modargs.CheckLoopbackTargets(cfg, len(m.TargetSSH)); err != nil {
		return nil, err
	}
	red := redact.New()
	res, err := m.secretValues(ctx, cfg, func(v string) { red.Add(v) })
	if err != nil {
		return nil, err
	}
	cleanup, err := m.useKnownHosts(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := m.reach(ctx, cfg); err != nil {
		cleanup()
		return nil, err
	}
	return &runEnv{cfg: cfg, red: red, res: res, cleanup: cleanup}, nil
}

// useKnownHosts writes the given known_hosts where every target reads it
// (the configuration's paths are on the caller's machine, not here).
func (m *LawskerDeploy) useKnownHosts(ctx context.Context, cfg *cfgpkg.Config) (func(), error) {
	if m.KnownHosts == nil {
		return func() {}, nil
	}
	contents, err := m.KnownHosts.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("--known-hosts: %w", err)
	}
	dir, err := os.MkdirTemp("", "lawsker-deploy-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("--known-hosts: %w", err)
	}
	for i := range cfg.Targets {
		cfg.Targets[i].SSH.KnownHosts = path
	}
	return func() { os.RemoveAll(dir) }, nil
}

// run runs a graph with plain progress lines; on failure the error's
// first line says what failed, the lines follow.
func (e *runEnv) run(ctx context.Context, verb string, g *pipelines.Graph) (string, error) {
	var out strings.Builder
	w := e.red.NewWriter(&out)
	result := pipelines.Run(ctx, g, pipelines.Options{
		MaxWorkers: e.cfg.Execution.MaxWorkers, Serial: !e.cfg.Execution.Parallel, ContinueOnFailure: true,
		DefaultTimeout: e.cfg.Execution.StepTimeout.D(), Observer: progress.NewPlain(w),
	})
	_ = w.Flush()
	if err := result.Err(); err != nil {
		return "", failed(verb, e.red.Error(err), out.String())
	}
	return out.String(), nil
}

// runRelease runs a deploy or rollback through the release session the
// CLI runs too (package release), and renders it: the steps as they ran,
// the verification, and the outcome as JSON.
func (e *runEnv) runRelease(ctx context.Context, verb, id string, rel release.Release) (string, error) {
	var out strings.Builder
	w := e.red.NewWriter(&out)
	r := release.Run(ctx, release.Request{Config: e.cfg, Resolver: e.res, ID: id, Who: "dagger@" + hostname(), Observer: progress.NewPlain(w), Mask: e.red.String}, rel)
	_ = w.Flush()
	if v := r.Outcome.Verification; v != nil && e.markdown {
		out.WriteString(e.red.String(checks.Markdown(v, fmt.Sprintf("Verification of %s (%s)", e.cfg.App, e.cfg.Environment))))
	} else if v != nil {
		out.WriteString(e.red.String(checks.Table(v)))
	}
	if c := r.Outcome.Canary; c != nil {
		out.WriteString(e.red.String("canary: " + c.String() + "\n"))
	}
	if lines := r.Outcome.ErrorLines; len(lines) > 0 {
		out.WriteString(e.red.String("error lines of the new release (" + r.Outcome.ErrorLinesFrom + "):\n" + rollout.FormatErrorLines(lines)))
	}
	for _, w := range r.Outcome.Warnings {
		out.WriteString(e.red.String("warning: " + w + "\n"))
	}
	data, _ := json.Marshal(map[string]any{"id": id, "targets": r.Targets, "outcome": r.Outcome, "notifications": r.Notifications})
	text := out.String() + e.red.String(string(data)) + "\n"
	if r.Err != nil {
		return "", failed(verb, e.red.Error(r.Err), text)
	}
	return text, nil
}

// failed is a function's error: its first line (what `dagger call` shows
// as the headline) says what failed and why; what ran follows.
func failed(verb string, err error, ran string) error {
	err = flatten(err)
	msg := err.Error()
	head := firstLine(msg)
	if strings.TrimSpace(ran) == "" && head == strings.TrimSpace(msg) {
		return fmt.Errorf("%s failed: %w", verb, err)
	}
	return fmt.Errorf("%s failed: %s\n\n%s\n%w", verb, head, strings.TrimRight(ran, "\n"), err)
}

// flatten makes err a plain error with its whole text. The generated
// module code reports only the innermost engine error of an error chain
// (an exec's "exit code: 1"), dropping the context this layer adds; a
// failed command's output tail is kept in the text.
func flatten(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var e *dagger.ExecError
	if errors.As(err, &e) {
		if out := strings.TrimSpace(tail(e.Stderr, 20)); out != "" {
			msg += "\n" + out
		} else if out := strings.TrimSpace(tail(e.Stdout, 20)); out != "" {
			msg += "\n" + out
		}
	}
	return errors.New(msg)
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "engine"
	}
	return h
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
