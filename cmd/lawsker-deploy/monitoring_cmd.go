package main

import (
	"context"
	"strings"

	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// monitoringCmd: monitoring apply [--dry-run].
func (c *cli) monitoringCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "apply" {
		return usageError{"monitoring needs a subcommand: apply [--dry-run]"}
	}
	fs := c.newFlagSet("monitoring apply")
	dryRun := fs.Bool("dry-run", false, "render and check with promtool, apply nothing")
	s, l, err := c.begin("monitoring", fs, args[1:])
	if err != nil {
		return err
	}
	cfg := l.Config
	if *dryRun {
		files, err := rollout.MonitoringFiles(ctx, cfg, s.res)
		if err == nil {
			err = monitoring.Check(ctx, files)
		}
		if err != nil {
			return c.endMonitoring(s, err)
		}
		s.out("checked with promtool (nothing applied): %s\n", strings.Join(files.Names(), ", "))
		path := s.end(report.StatusSucceeded, nil, files.Names())
		s.out("report: %s\n", path)
		return nil
	}
	res, _, err := rollout.ApplyMonitoring(ctx, cfg, s.res, true)
	if err != nil {
		return c.endMonitoring(s, err)
	}
	s.out("monitoring applied on %s: %s; Prometheus %s", cfg.Primary().Name, strings.Join(res.Files, ", "), res.Prometheus)
	if res.Grafana != "" {
		s.out(", Grafana %s", res.Grafana)
	}
	for _, t := range cfg.Targets {
		if st, ok := res.LogStores[t.Name]; ok {
			s.out("; log store on %s: %s", t.Name, s.red.String(st))
		}
	}
	path := s.end(report.StatusSucceeded, nil, res)
	s.out("\nreport: %s\n", path)
	return nil
}

// endMonitoring ends a failed run: exit 1 (a target, promtool or a
// container failed), the report says why.
func (c *cli) endMonitoring(s *session, err error) error {
	s.end(report.StatusFailed, err, nil)
	return c.failed(s, s.red.Error(err))
}
