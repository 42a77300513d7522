package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// TlsStatus shows every domain's certificate as JSON: issuer, expiry, days left, when it is renewed.
//
// A certificate is renewed a third of its lifetime before it expires.
// +cache="never"
func (m *LawskerDeploy) TlsStatus(ctx context.Context) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	st, err := rollout.CertificateStatus(ctx, env.cfg, env.res)
	if err != nil {
		return "", failed("tls-status", env.red.Error(err), "")
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	return string(data) + "\n", nil
}

// IssueCertificates obtains the missing certificates and renews the due ones with lego.
//
// With --force every certificate is renewed. Every domain is first checked
// to resolve to a target; HTTP-01 through nginx's webroot on the targets,
// or DNS-01 through tls.dns_provider with tls.dns_credentials; installed on
// every target (keys 0600), then nginx reloads. A renewal that fails keeps
// the serving certificate and says why.
// +cache="never"
func (m *LawskerDeploy) IssueCertificates(
	ctx context.Context,
	// Renew every certificate, due or not.
	// +optional
	force bool,
) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	rep, err := rollout.IssueCertificates(ctx, env.cfg, env.res, force, nil)
	data, _ := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", failed("issue-certificates", env.red.Error(err), string(data))
	}
	return env.red.String(string(data)) + "\n", nil
}

// ApplyMonitoring renders, checks with promtool and applies the monitoring of the serving release.
//
// Prometheus configuration scraping its backend (node and nginx exporters
// when configured), alert rules for backend down, error rate, p95 latency,
// certificate expiry and disk, and Grafana provisioning with a dashboard;
// promtool checks it in the Prometheus image first. Prometheus (and
// Grafana) run as containers on the first target, and Prometheus reloads
// without a restart.
// +cache="never"
func (m *LawskerDeploy) ApplyMonitoring(ctx context.Context) (string, error) {
	env, err := m.env(ctx, false)
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	files, err := rollout.MonitoringFiles(ctx, env.cfg, env.res)
	if err != nil {
		return "", failed("apply-monitoring", env.red.Error(err), "")
	}
	dir := dag.Directory()
	for _, name := range files.Names() {
		dir = dir.WithNewFile(name, string(files[name]))
	}
	check := dag.Container().From(env.cfg.Monitoring.PrometheusImage).
		WithDirectory("/check", dir).
		WithExec([]string{"promtool", "check", "config", "/check/prometheus.yml"}, dagger.ContainerWithExecOpts{UseEntrypoint: false})
	if _, err := check.Sync(ctx); err != nil {
		return "", fmt.Errorf("apply-monitoring failed: promtool refused the monitoring configuration (nothing was applied): %w", err)
	}
	res, _, err := rollout.ApplyMonitoring(ctx, env.cfg, env.res, false)
	if err != nil {
		return "", failed("apply-monitoring", env.red.Error(err), "")
	}
	data, _ := json.MarshalIndent(res, "", "  ")
	return string(data) + "\n", nil
}
