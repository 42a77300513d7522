package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// logs prints a release's backend output (rollout.Logs); --json prints one
// JSON object a line.
func (c *cli) logs(ctx context.Context, args []string) error {
	fs := c.newFlagSet("logs")
	release := fs.String("release", "current", "whose output: current, previous, or a release id (releases lists them)")
	since := fs.Duration("since", 0, "only lines of the last duration, e.g. 10m (default: every line the container kept)")
	grep := fs.String("grep", "", "only lines containing this text")
	lines := fs.Int("lines", 200, "at most the newest N lines of each target (0: all); not with --follow")
	follow := fs.Bool("follow", false, "go on printing lines as they are written, until Ctrl-C")
	source := fs.String("source", "backend", "what to read: backend (the release's output), access or error (nginx's logs, from the log store), or all")
	s, l, err := c.begin("logs", fs, args)
	if err != nil {
		return err
	}
	if *lines < 0 || *since < 0 {
		err := usageError{"logs: --lines and --since cannot be negative"}
		s.end(report.StatusInvalid, err, nil)
		return err
	}
	req := rollout.LogsRequest{Config: l.Config, Resolver: s.res, Release: *release, Source: *source, Since: *since, Grep: *grep, Lines: *lines, Follow: *follow}
	if *follow {
		req.Lines = 0
	}
	n := 0
	src, runErr := rollout.Logs(ctx, req, func(line rollout.LogLine) error {
		n++
		if c.jsonOut {
			var b bytes.Buffer
			if err := rollout.WriteLogJSON(&b, line); err != nil {
				return err
			}
			_, err := c.stdout.Write(s.red.Bytes(b.Bytes()))
			return err
		}
		stamp := "-"
		if !line.Time.IsZero() {
			stamp = line.Time.Local().Format(time.RFC3339)
		}
		s.out("%s %s %s %s %s\n", stamp, line.Target, line.Release, line.Source, line.Message)
		return nil
	})
	if !c.jsonOut {
		fmt.Fprintf(c.stderr, "logs: %d line(s) of %s\n", n, src)
	}
	status := report.StatusSucceeded
	if runErr != nil {
		status = report.StatusFailed
	}
	s.end(status, runErr, map[string]any{"release": *release, "source": *source, "read_from": src, "lines": n})
	return c.failed(s, runErr)
}
