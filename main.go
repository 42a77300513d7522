// Deploy, verify, snapshot and roll back a web application whose database travels with the release.
//
// The module is a thin layer over plain Go packages (config, deploy,
// rollout, checks, snapshots, ...), which are tested with `go test` against
// real servers; the static binary lawsker-deploy is a second front door over
// the same packages. The constructor holds what every function shares:
//
//	dagger call --config=deploy.json --secrets=env://DB_PASSWORD,file://$HOME/.ssh/id_ed25519 \
//	  --known-hosts=$HOME/.ssh/known_hosts deploy --backend-image=REGISTRY/REPO@sha256:...
//
// A function runs in the engine's network, not on your machine: a target
// (or registry) that only your machine reaches, such as the local demo on
// 127.0.0.1 or a host behind your VPN or an SSH forward through a bastion,
// is reached through a service argument: --target-ssh=tcp://localhost:2222.
package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	cfgpkg "github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/modargs"
)

// goImage is the toolchain image of the module's own checks; it matches the
// go line of go.mod.
const goImage = "golang:1.26-bookworm"

// LawskerDeploy is the module: the inputs every function shares.
type LawskerDeploy struct {
	// +private
	Config *dagger.File
	// +private
	Secrets []*dagger.Secret
	// +private
	KnownHosts *dagger.File
	// +private
	Source *dagger.Directory
	// +private
	TargetSSH []*dagger.Service
	// +private
	Registry *dagger.Service
}

// New checks the shared inputs once, before any function runs.
func New(
	ctx context.Context,
	// The configuration file: deploy.json, or Lawsker's legacy deployment_config.json.
	// +optional
	config *dagger.File,
	// Secrets the configuration references, matched by their source:
	// env://NAME feeds env:NAME, file://PATH feeds file:PATH (the same path,
	// or an absolute path ending with a relative reference's path).
	// +optional
	secrets []*dagger.Secret,
	// known_hosts for every target (the configuration's known_hosts paths are on your machine, not in the engine).
	// +optional
	knownHosts *dagger.File,
	// The application's source, built when deploy gets no --backend-image (.git, node_modules and caches are left out; build output such as a prebuilt dist/ is kept).
	// +defaultPath="/"
	// +ignore=[".git", "**/node_modules", "**/__pycache__", "**/.venv", ".cache", "bin", "reports", "logs"]
	source *dagger.Directory,
	// One SSH service per target, in the order of targets[], for targets
	// only your machine reaches: tcp://localhost:2222 for the local demo,
	// or the local end of `ssh -L 2222:app-host:22 bastion`. The configured
	// host and port still name the target for known_hosts.
	// +optional
	targetSsh []*dagger.Service,
	// The registry on your machine's loopback (tcp://localhost:5000), for
	// preflight's probe; the engine pushes there by itself.
	// +optional
	registry *dagger.Service,
) (*LawskerDeploy, error) {
	m := &LawskerDeploy{Config: config, Secrets: secrets, KnownHosts: knownHosts, Source: source, TargetSSH: targetSsh, Registry: registry}
	if config == nil {
		if len(secrets) > 0 || knownHosts != nil || len(targetSsh) > 0 || registry != nil {
			return nil, fmt.Errorf("--secrets, --known-hosts, --target-ssh and --registry go with --config=deploy.json")
		}
		return m, nil
	}
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	if err := modargs.CheckTargetServices(cfg, len(targetSsh)); err != nil {
		return nil, err
	}
	if registry != nil {
		if err := modargs.CheckRegistryService(cfg); err != nil {
			return nil, err
		}
	}
	if _, err := m.secretValues(ctx, cfg, func(string) {}); err != nil {
		return nil, err
	}
	return m, nil
}

// config is the configuration given, or deploy.json in the source.
func (m *LawskerDeploy) configFile(ctx context.Context) (*dagger.File, error) {
	if m.Config != nil {
		return m.Config, nil
	}
	ok, err := m.Source.Exists(ctx, "deploy.json", dagger.DirectoryExistsOpts{ExpectedType: dagger.ExistsTypeRegularType})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no configuration: pass it to the module, `dagger call --config=deploy.json <function> ...` (the source has no deploy.json either)")
	}
	return m.Source.File("deploy.json"), nil
}

// load reads the configuration; verb names the converting function in
// a legacy file's notes.
func (m *LawskerDeploy) load(ctx context.Context, verb string) (*cfgpkg.Loaded, error) {
	f, err := m.configFile(ctx)
	if err != nil {
		return nil, err
	}
	data, err := f.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("config: reading the file: %w", err)
	}
	return cfgpkg.Parse([]byte(data), cfgpkg.ImportOptions{Verb: verb})
}

func (m *LawskerDeploy) loadConfig(ctx context.Context) (*cfgpkg.Config, error) {
	l, err := m.load(ctx, "config-import")
	if err != nil {
		return nil, err
	}
	return l.Config, nil
}

// secretValues reads the secrets and matches them to the configuration.
func (m *LawskerDeploy) secretValues(ctx context.Context, cfg *cfgpkg.Config, onResolve func(string)) (*cfgpkg.Resolver, error) {
	in := make([]modargs.Secret, len(m.Secrets))
	for i, s := range m.Secrets {
		uri, err := s.URI(ctx)
		if err != nil {
			return nil, fmt.Errorf("--secrets[%d]: %w", i, err)
		}
		value, err := s.Plaintext(ctx)
		if err != nil {
			return nil, fmt.Errorf("--secrets[%d] (%s): %w", i, uri, err)
		}
		in[i] = modargs.Secret{URI: uri, Value: value}
	}
	return modargs.Resolver(cfg, in, onResolve)
}

// reach starts the target services and points each target at its
// service's endpoint, after checking that an SSH server answers there.
func (m *LawskerDeploy) reach(ctx context.Context, cfg *cfgpkg.Config) error {
	endpoints := make([]string, len(m.TargetSSH))
	for i, svc := range m.TargetSSH {
		t := cfg.Targets[i]
		what := fmt.Sprintf("targets[%d] %s: the service given by --target-ssh", i, t.Name)
		started, err := svc.Start(ctx)
		if err != nil {
			return fmt.Errorf("%s could not start: %w", what, err)
		}
		ep, err := started.Endpoint(ctx)
		if err != nil {
			return fmt.Errorf("%s has no endpoint: %w", what, err)
		}
		if err := modargs.ProbeSSH(ctx, what, ep, 10*time.Second); err != nil {
			port := ep[strings.LastIndex(ep, ":")+1:]
			return fmt.Errorf("%w; check that `ssh -p %s %s@localhost` works on your machine", err, port, t.SSH.User)
		}
		endpoints[i] = ep
	}
	modargs.Reach(cfg, endpoints)
	return nil
}

// registryVia starts the registry service and returns its endpoint ("" without one).
func (m *LawskerDeploy) registryVia(ctx context.Context) (string, error) {
	if m.Registry == nil {
		return "", nil
	}
	started, err := m.Registry.Start(ctx)
	if err != nil {
		return "", fmt.Errorf("--registry: the service could not start: %w", err)
	}
	return started.Endpoint(ctx)
}

// firstLine is the first line of a text.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
