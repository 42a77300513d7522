package main

import (
	"context"
	"time"

	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// maintenance: maintenance on [--message M] | off | status.
func (c *cli) maintenance(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != rollout.MaintenanceOn && args[0] != rollout.MaintenanceOff && args[0] != rollout.MaintenanceStatus) {
		return usageError{"maintenance needs on [--message M], off or status"}
	}
	action := args[0]
	fs := c.newFlagSet("maintenance " + action)
	message := fs.String("message", "", "with on: the page's text (default maintenance.message)")
	s, l, err := c.begin("maintenance", fs, args[1:])
	if err != nil {
		return err
	}
	states, runErr := rollout.Maintenance(ctx, rollout.MaintenanceRequest{Config: l.Config, Resolver: s.res, Action: action, Message: *message, Who: who()})
	if c.jsonOut {
		if err := s.jsonOut(states); err != nil {
			return err
		}
	} else {
		for _, m := range states {
			switch {
			case m.On:
				s.out("%s: maintenance on since %s (by %s): %q; release %s serves again when it is off\n", m.Target, m.Since.Local().Format(time.RFC3339), m.Who, m.Message, m.Release)
			case action == rollout.MaintenanceOff && m.Release != "":
				s.out("%s: maintenance off; release %s serves\n", m.Target, m.Release)
			default:
				s.out("%s: maintenance off\n", m.Target)
			}
		}
	}
	status := report.StatusSucceeded
	if runErr != nil {
		status = report.StatusFailed
	}
	s.end(status, runErr, map[string]any{"action": action, "targets": states})
	return c.failed(s, runErr)
}
