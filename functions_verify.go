package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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

// Logs returns a release's backend output, or nginx's access and error logs, on every target, oldest first, every configured secret masked.
//
// --release is current (the default), previous, or a release id. With
// monitoring.logs the lines come from the log store on each target
// (VictoriaLogs, through SSH); where it is down, or without it, the
// backend's output is read with docker logs over SSH (the first line says
// which). A
// function returns once: follow the output with the CLI (lawsker-deploy
// logs --follow).
// +cache="never"
func (m *LawskerDeploy) Logs(
	ctx context.Context,
	// Whose output: current, previous, or a release id.
	// +default="current"
	release string,
	// Only lines of the last duration, e.g. 10m (default: every line the container kept).
	// +optional
	since string,
	// Only lines containing this text.
	// +optional
	grep string,
	// At most the newest N lines of each target (0: all).
	// +default=200
	lines int,
	// What to read: backend (the release's output), access or error (nginx's logs, from the log store), or all.
	// +default="backend"
	source string,
	// One JSON object a line (target, release, source, time, message) instead of text.
	// +optional
	json bool,
) (string, error) {
	var window time.Duration
	if since != "" {
		d, err := time.ParseDuration(since)
		if err != nil || d < 0 {
			return "", fmt.Errorf("logs: --since %q is not a duration (10m, 1h30m)", since)
		}
		window = d
	}
	if lines < 0 {
		return "", errors.New("logs: --lines cannot be negative")
	}
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	var b strings.Builder
	src, err := rollout.Logs(ctx, rollout.LogsRequest{Config: env.cfg, Resolver: env.res, Release: release, Source: source, Since: window, Grep: grep, Lines: lines},
		func(l rollout.LogLine) error {
			if json {
				return rollout.WriteLogJSON(&b, l)
			}
			fmt.Fprintf(&b, "%s %s %s %s %s\n", l.Time.UTC().Format(time.RFC3339), l.Target, l.Release, l.Source, l.Message)
			return nil
		})
	head := "# " + src + "\n"
	if json {
		head = ""
	}
	text := env.red.String(head + b.String())
	if err != nil {
		return "", failed("logs", env.red.Error(err), text)
	}
	return text, nil
}

// Maintenance turns maintenance mode on or off on every web target, or shows it.
//
// on: nginx answers 503 with Retry-After and the maintenance page
// (maintenance.page, or a plain page with --message), the health path and
// ACME tokens still served; deploys and switches are refused until off
// puts the serving release back. Taken under each target's deploy lock;
// all or nothing.
// +cache="never"
func (m *LawskerDeploy) Maintenance(
	ctx context.Context,
	// on, off or status.
	action string,
	// With on: the page's text (default maintenance.message).
	// +optional
	message string,
) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	states, err := rollout.Maintenance(ctx, rollout.MaintenanceRequest{Config: env.cfg, Resolver: env.res, Action: action, Message: message, Who: "dagger@" + hostname()})
	data, _ := json.MarshalIndent(states, "", "  ")
	text := env.red.String(string(data)) + "\n"
	if err != nil {
		return "", failed("maintenance", env.red.Error(err), text)
	}
	return text, nil
}
