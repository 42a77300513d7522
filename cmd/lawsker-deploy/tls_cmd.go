package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// tlsCmd: tls issue [--force] | renew | status.
func (c *cli) tlsCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "issue" && args[0] != "renew" && args[0] != "status") {
		return usageError{"tls needs a subcommand: issue [--force], renew or status"}
	}
	sub := args[0]
	fs := c.newFlagSet("tls " + sub)
	force := fs.Bool("force", false, "issue: renew every certificate, due or not")
	s, l, err := c.begin("tls", fs, args[1:])
	if err != nil {
		return err
	}
	cfg := l.Config
	var te *rollout.TargetError
	if sub == "status" {
		st, err := rollout.CertificateStatus(ctx, cfg, s.res)
		if err != nil {
			status := report.StatusInvalid
			if errors.As(err, &te) {
				status = report.StatusFailed
			}
			s.end(status, err, nil)
			if status == report.StatusInvalid {
				return usageError{s.red.String(err.Error())}
			}
			return c.failed(s, s.red.Error(err))
		}
		if c.jsonOut {
			_ = s.jsonOut(st)
		} else {
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOMAIN\tISSUER\tEXPIRES\tDAYS LEFT\tRENEW FROM\tSTATE")
			for _, x := range st {
				state := "ok"
				switch {
				case x.Error != "":
					state = x.Error
				case x.Due:
					state = "due for renewal"
				}
				exp, renew := "-", "-"
				if !x.NotAfter.IsZero() {
					exp, renew = x.NotAfter.Local().Format("2006-01-02 15:04"), x.RenewAt.Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", x.Domain, orDash(x.Issuer), exp, x.DaysLeft, renew, state)
			}
			tw.Flush()
			s.out("%s", b.String())
		}
		path := s.end(report.StatusSucceeded, nil, st)
		if !c.jsonOut {
			s.out("report: %s\n", path)
		}
		return nil
	}
	start := time.Now()
	rep, err := rollout.IssueCertificates(ctx, cfg, s.res, *force, nil)
	if rep != nil && !c.jsonOut {
		for _, r := range rep.Results {
			line := fmt.Sprintf("%s: %s", r.Domain, r.Action)
			if !r.NotAfter.IsZero() {
				line += fmt.Sprintf(" (valid until %s, %s)", r.NotAfter.Local().Format("2006-01-02 15:04"), r.Issuer)
			}
			if r.Error != "" {
				line += ": " + s.red.String(r.Error)
			}
			s.out("%s\n", line)
		}
		if len(rep.Reloaded) > 0 {
			s.out("nginx reloaded on %s\n", strings.Join(rep.Reloaded, ", "))
		}
	}
	if c.jsonOut && rep != nil {
		_ = s.jsonOut(rep)
	}
	if err != nil {
		status := report.StatusFailed
		if !errors.As(err, &te) && rep == nil {
			status = report.StatusInvalid
		}
		s.end(status, err, rep)
		if status == report.StatusInvalid {
			return usageError{s.red.String(err.Error())}
		}
		return c.failed(s, s.red.Error(err))
	}
	path := s.end(report.StatusSucceeded, nil, rep)
	if !c.jsonOut {
		s.out("done in %s; report: %s\n", time.Since(start).Round(time.Millisecond), path)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
