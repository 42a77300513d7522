package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/release"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// openStore connects to the first target and opens the snapshot store; on
// failure the session ends (failed to connect, invalid store).
func (c *cli) openStore(ctx context.Context, s *session, cfg *config.Config) (*rollout.Store, error) {
	st, err := rollout.OpenStore(ctx, cfg, s.res)
	var te *rollout.TargetError
	switch {
	case errors.As(err, &te):
		s.end(report.StatusFailed, err, nil)
		return nil, failure{s.red.Error(err)}
	case err != nil:
		s.end(report.StatusInvalid, err, nil)
		return nil, err
	}
	return st, nil
}

func (c *cli) snapshotCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"snapshot needs a subcommand: create, list, show ID, check ID, delete ID, prune"}
	}
	sub, rest := args[0], args[1:]
	fs := c.newFlagSet("snapshot " + sub)
	desc := fs.String("description", "", "what this snapshot is for (create)")
	dryRun := fs.Bool("dry-run", false, "prune: say what would go, delete nothing")
	var id string
	if sub == "show" || sub == "check" || sub == "delete" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return usageError{"snapshot " + sub + " needs a snapshot id"}
		}
		id, rest = rest[0], rest[1:]
	} else if sub != "create" && sub != "list" && sub != "prune" {
		return usageError{fmt.Sprintf("unknown snapshot subcommand %q (create, list, show, check, delete, prune)", sub)}
	}
	s, l, err := c.begin("snapshot", fs, rest)
	if err != nil {
		return err
	}
	cfg := l.Config
	store, err := c.openStore(ctx, s, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	var details any
	switch sub {
	case "create":
		m, err := rollout.Snapshot(ctx, cfg, s.res, store, *desc)
		if err != nil {
			s.end(report.StatusFailed, err, nil)
			return failure{s.red.Error(err)}
		}
		details = m
		s.out("created %s in %s: %s\n", m.ID, store, describe(m))
		for _, w := range m.Warnings {
			fmt.Fprintln(c.stderr, "warning:", s.red.String(w))
		}
	case "list":
		ms, errs := snapshots.List(ctx, store)
		details = ms
		if c.jsonOut {
			_ = s.jsonOut(ms)
		} else {
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SNAPSHOT\tCREATED\tTRIGGER\tCOMPONENTS\tSIZE\tDESCRIPTION")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%q\n", m.ID, m.Created.Local().Format("2006-01-02 15:04"), m.Trigger, snapshots.Names(m.Components), human(totalSize(m)), m.Description)
			}
			tw.Flush()
			s.out("%s", b.String())
			if len(ms) == 0 {
				s.out("no snapshots in %s\n", store)
			}
		}
		for _, e := range errs {
			fmt.Fprintln(c.stderr, "warning:", e)
		}
	case "show", "check":
		m, err := snapshots.Load(ctx, store, id)
		if err != nil {
			s.end(report.StatusInvalid, err, nil)
			return err
		}
		details = m
		if sub == "check" {
			if err := snapshots.Check(ctx, store, m); err != nil {
				s.end(report.StatusFailed, err, m)
				return failure{err}
			}
			s.out("%s: every artifact matches its manifest (%s)\n", m.ID, describe(m))
		} else if c.jsonOut {
			_ = s.jsonOut(m)
		} else {
			s.out("%s\n  created   %s (%s)\n  components %s\n", m.ID, m.Created.Local().Format(time.RFC3339), m.Trigger, describe(m))
			if m.Database != nil {
				s.out("  database  %s on %s:%d, PostgreSQL %s, %s, %s\n", m.Database.Name, m.Database.Host, m.Database.Port, m.Database.ServerVersion, m.Database.Migration(), m.Database.Schema.Describe())
			}
			for comp, img := range m.Images {
				s.out("  image     %s: %s\n", comp, img)
			}
		}
	case "prune":
		pr, err := rollout.Prune(ctx, cfg, s.res, store.Host, store, time.Now(), *dryRun)
		if pr != nil {
			for _, d := range pr.Decisions {
				verb := "keep  "
				if !d.Keep {
					verb = "delete"
				}
				s.out("%s %s (%s)\n", verb, d.Manifest.ID, d.Reason)
			}
			for _, n := range pr.Databases {
				s.out("drop   database %s (replaced by a restore more than %d days ago)\n", n, cfg.Snapshots.RetentionDays)
			}
			for _, n := range pr.RestoreCopies {
				s.out("drop   database %s (the copy of a restore that never finished)\n", n)
			}
			details = pr
		}
		if err != nil {
			s.end(report.StatusFailed, err, details)
			return failure{s.red.Error(err)}
		}
		if *dryRun {
			s.out("dry run: nothing deleted\n")
		} else {
			s.out("%d snapshot(s) deleted, %d database(s) dropped\n", len(pr.Deleted), len(pr.Databases)+len(pr.RestoreCopies))
		}
	case "delete":
		if _, err := snapshots.Load(ctx, store, id); err != nil {
			s.end(report.StatusInvalid, err, nil)
			return err
		}
		if err := snapshots.Delete(ctx, store, id); err != nil {
			s.end(report.StatusFailed, err, nil)
			return failure{err}
		}
		s.out("deleted %s\n", id)
	}
	path := s.end(report.StatusSucceeded, nil, details)
	if !c.jsonOut {
		s.out("report: %s\n", path)
	}
	return nil
}

func describe(m *snapshots.Manifest) string {
	var parts []string
	comps := slices.Clone(m.Components)
	slices.Sort(comps)
	for _, c := range comps {
		if a, ok := m.Artifacts[c]; ok {
			parts = append(parts, fmt.Sprintf("%s (%s, sha256 %s)", c, human(a.Size), a.SHA256[:12]))
		} else if img, ok := m.Images[c]; ok {
			parts = append(parts, string(c)+" "+shortImage(img))
		}
	}
	return strings.Join(parts, ", ")
}

func totalSize(m *snapshots.Manifest) int64 {
	var n int64
	for _, a := range m.Artifacts {
		n += a.Size
	}
	return n
}

func human(n int64) string { return rollout.HumanBytes(n) }

// rollbackSnapshot rolls back to a snapshot: the plan first, then the
// restore (a health-gated deploy of the snapshot's release, its database
// first when it is restored), then verification and the report.
func (c *cli) rollbackSnapshot(ctx context.Context, s *session, cfg *config.Config, id, components string, dryRun bool) error {
	store, err := c.openStore(ctx, s, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	var asked []string
	if components != "" {
		asked = strings.Split(components, ",")
	}
	m, plan, err := rollout.PlanFor(ctx, cfg, s.res, store, id, asked)
	var te *rollout.TargetError
	switch {
	case errors.As(err, &te):
		s.end(report.StatusFailed, err, nil)
		return failure{s.red.Error(err)}
	case m == nil && err != nil:
		s.end(report.StatusInvalid, err, nil)
		return err
	case err != nil:
		s.end(report.StatusInvalid, err, nil)
		return usageError{s.red.String(err.Error())}
	}
	s.out("rollback plan: %s -> %s (release %s), risk %s: %s; about %s\n", snapshots.Names(plan.Components), m.ID, plan.Release, plan.Risk, plan.RiskWhy, plan.Estimate)
	for i, st := range plan.Steps {
		s.out("  %d. %s\n", i+1, st)
	}
	if dryRun {
		path := s.end(report.StatusSucceeded, nil, plan)
		s.out("dry run: nothing changed; report: %s\n", path)
		return nil
	}
	work, err := os.MkdirTemp("", "lawsker-rollback-")
	if err != nil {
		s.end(report.StatusFailed, err, plan)
		return failure{err}
	}
	defer os.RemoveAll(work)
	r, err := rollout.PrepareRestore(ctx, rollout.RestoreRequest{Config: cfg, Resolver: s.res, Store: store.Store, Manifest: m, Plan: plan,
		ID: s.id, Who: who(), WorkDir: work, Logger: s.log.Logger})
	if err != nil {
		s.end(report.StatusFailed, err, plan)
		return failure{s.red.Error(err)}
	}
	defer r.Close()
	return c.finishRelease(s, s.runRelease(ctx, cfg, release.Rollback(r, plan)), "rolled back", plan)
}
