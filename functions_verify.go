package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// Preflight checks, changing nothing, that deploy can reach what it needs.
//
// Every secret reference resolves from --secrets, every target accepts the
// SSH key with its host key matching known_hosts (through its --target-ssh
// service when given), and the registry answers (a registry on your
// machine's loopback only through --registry; without it the probe is
// skipped with the reason: the engine pushes there by itself).
// +cache="never"
func (m *LawskerDeploy) Preflight(ctx context.Context) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	via, err := m.registryVia(ctx)
	if err != nil {
		return "", err
	}
	g, err := deploy.Preflight(env.cfg, env.res, deploy.PreflightOptions{RegistryVia: via, InEngine: true})
	if err != nil {
		return "", err
	}
	return env.run(ctx, "preflight", g)
}

// Verify runs the verification suite (health, functional, performance, security) and prints its table.
//
// It fails when a check fails. Through the first target's SSH connection
// the database and Redis are reached and file permissions checked; a
// target reached through --target-ssh is reached only that way, its site
// included (its open ports cannot be scanned from the engine: that check
// is skipped with the reason). The performance baseline is the newest
// post-deploy snapshot's of the serving release, read from the snapshot
// store.
// +cache="never"
func (m *LawskerDeploy) Verify(
	ctx context.Context,
	// The URL to verify (default: verification.base_url, or derived).
	// +optional
	baseURL string,
	// Comma-separated categories (default: verification.categories).
	// +optional
	category string,
) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	req := rollout.VerifyRequest{Config: env.cfg, Resolver: env.res, BaseURL: baseURL}
	for _, c := range strings.Split(category, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !checks.Category(c).Valid() {
			return "", fmt.Errorf("verify: unknown category %q (health, functional, performance, security)", c)
		}
		req.Categories = append(req.Categories, checks.Category(c))
	}
	run, err := rollout.Verify(ctx, req)
	if err != nil {
		return "", failed("verify", env.red.Error(err), "")
	}
	text := checks.Table(run.Suite) + "\n" + checks.Markdown(run.Suite, "Verification of "+env.cfg.App+" ("+run.BaseURL+")")
	if run.BaselineFrom != "" {
		text += "\nperformance baseline: " + run.BaselineFrom + "\n"
	}
	if run.Note != "" {
		text += "\nnote: " + run.Note + "\n"
	}
	text = env.red.String(text)
	if run.Suite.Failed() {
		return "", fmt.Errorf("verify failed: %d check(s) failed\n\n%s", run.Suite.Count(checks.Fail), text)
	}
	return text, nil
}
