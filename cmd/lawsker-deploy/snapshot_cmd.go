package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/snapshots"
	"github.com/lawsker/lawsker-deploy/target"
)

// firstTarget connects to the first target (snapshots live there or are
// taken from there).
func (c *cli) firstTarget(ctx context.Context, s *session, cfg *config.Config) (*target.Host, error) {
	e, err := deploy.Endpoint(cfg.Targets[0], s.res)
	if err != nil {
		return nil, fmt.Errorf("targets[0].%w", err)
	}
	return target.Connect(ctx, e, 3)
}

// openStore connects to the first target and opens the snapshot store; on
// failure the session ends (failed to connect, invalid store).
func (c *cli) openStore(ctx context.Context, s *session, cfg *config.Config) (*target.Host, snapshots.Store, error) {
	h, err := c.firstTarget(ctx, s, cfg)
	if err != nil {
		s.end(report.StatusFailed, err, nil)
		return nil, nil, failure{err}
	}
	store, err := snapshots.OpenStore(cfg, h)
	if err != nil {
		h.Close()
		s.end(report.StatusInvalid, err, nil)
		return nil, nil, err
	}
	return h, store, nil
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
	h, store, err := c.openStore(ctx, s, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	var details any
	switch sub {
	case "create":
		var cur *snapshots.Current
		layout := deploy.NewLayout(cfg, cfg.Targets[0])
		st, err := deploy.LoadState(h, layout)
		if err != nil {
			err = fmt.Errorf("reading the target's releases: %w", err)
			s.end(report.StatusFailed, err, nil)
			return failure{err}
		}
		if r, ok := st.Current(); ok {
			cur = &snapshots.Current{ID: r.ID, Image: r.Image}
			if cfg.Frontend != nil {
				cur.FrontendDir = layout.Frontend(r.ID)
			}
		}
		m, err := snapshots.Create(ctx, snapshots.CreateRequest{Config: cfg, Resolver: s.res, Host: h, Store: store, Current: cur, Description: *desc, Trigger: "manual"})
		if err != nil {
			s.end(report.StatusFailed, err, nil)
			return failure{s.red.Error(err)}
		}
		details = m
		s.out("created %s in %s: %s\n", m.ID, store, describe(m))
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%q\n", m.ID, m.Created.Local().Format("2006-01-02 15:04"), m.Trigger, strings.Join(m.Components, ","), human(totalSize(m)), m.Description)
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
				s.out("  database  %s on %s:%d, PostgreSQL %s, migration %q\n", m.Database.Name, m.Database.Host, m.Database.Port, m.Database.ServerVersion, m.Database.MigrationVersion)
			}
			for comp, img := range m.Images {
				s.out("  image     %s: %s\n", comp, img)
			}
		}
	case "prune":
		ms, errs := snapshots.List(ctx, store)
		for _, e := range errs {
			fmt.Fprintln(c.stderr, "warning:", e)
		}
		protected := map[string]string{}
		if st, err := deploy.LoadState(h, deploy.NewLayout(cfg, cfg.Targets[0])); err == nil {
			if r, ok := st.Current(); ok {
				protected["current"] = r.Image
			}
			if r, ok := st.Previous(); ok {
				protected["previous"] = r.Image
			}
		} else {
			err = fmt.Errorf("reading the target's releases (needed to protect their snapshots): %w", err)
			s.end(report.StatusFailed, err, nil)
			return failure{err}
		}
		decisions := snapshots.Retention(ms, cfg.Snapshots.KeepLast, cfg.Snapshots.RetentionDays, time.Now(), protected)
		var deleted []string
		for _, d := range decisions {
			verb := "keep  "
			if !d.Keep {
				verb = "delete"
				if !*dryRun {
					if err := snapshots.Delete(ctx, store, d.Manifest.ID); err != nil {
						s.end(report.StatusFailed, err, decisions)
						return failure{err}
					}
					deleted = append(deleted, d.Manifest.ID)
				}
			}
			s.out("%s %s (%s)\n", verb, d.Manifest.ID, d.Reason)
		}
		details = decisions
		if *dryRun {
			s.out("dry run: nothing deleted\n")
		} else {
			s.out("%d snapshot(s) deleted\n", len(deleted))
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
	comps := append([]string(nil), m.Components...)
	sort.Strings(comps)
	for _, c := range comps {
		if a, ok := m.Artifacts[c]; ok {
			parts = append(parts, fmt.Sprintf("%s (%s, sha256 %s)", c, human(a.Size), a.SHA256[:12]))
		} else if img, ok := m.Images[c]; ok {
			parts = append(parts, c+" "+shortImage(img))
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

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// rollbackPlan is what `rollback --snapshot` will do, shown first.
type rollbackPlan struct {
	Snapshot   string   `json:"snapshot"`
	Components []string `json:"components"`
	Steps      []string `json:"steps"`
	Risk       string   `json:"risk"`
	Estimate   string   `json:"estimated_duration"`
}

// rollbackSnapshot restores the database of a snapshot (backend and
// frontend from a snapshot come later; the warm previous release is
// `rollback --previous`).
func (c *cli) rollbackSnapshot(ctx context.Context, s *session, cfg *config.Config, id, components string, dryRun bool) error {
	comps := []string{"database"}
	if components != "" {
		comps = strings.Split(components, ",")
	}
	for _, comp := range comps {
		if comp != "database" {
			err := usageError{fmt.Sprintf("rollback --snapshot: restoring %q from a snapshot is not available yet; `rollback --previous` brings back the warm previous release (backend and frontend), and --components database the data", comp)}
			s.end(report.StatusInvalid, err, nil)
			return err
		}
	}
	db := cfg.Database
	if db == nil {
		err := errors.New("rollback --snapshot --components database: the configuration has no database")
		s.end(report.StatusInvalid, err, nil)
		return err
	}
	h, store, err := c.openStore(ctx, s, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	m, err := snapshots.Load(ctx, store, id)
	if err != nil {
		s.end(report.StatusInvalid, err, nil)
		return err
	}
	size := m.Artifacts["database"].Size
	plan := rollbackPlan{Snapshot: m.ID, Components: comps, Risk: "high (the data of the database goes back to " + m.Created.Local().Format(time.RFC3339) + ")",
		Estimate: (time.Duration(size/(20<<20))*time.Second + 5*time.Second).String(),
		Steps: []string{
			"take the deploy lock",
			fmt.Sprintf("copy the %s dump to the target and verify its SHA-256", human(size)),
			"pg_restore --jobs 2 into a fresh database",
			fmt.Sprintf("swap: %s becomes %s_replaced_<time> (kept), the restored copy becomes %s", db.Name, db.Name, db.Name),
			"health checks", "release the lock"}}
	s.out("rollback plan: %s -> %s, risk %s, about %s\n", strings.Join(comps, ","), m.ID, plan.Risk, plan.Estimate)
	for i, st := range plan.Steps {
		s.out("  %d. %s\n", i+1, st)
	}
	if dryRun {
		path := s.end(report.StatusSucceeded, nil, plan)
		s.out("dry run: nothing changed; report: %s\n", path)
		return nil
	}
	adminPW, err := s.res.Resolve(db.AdminPassword)
	if err != nil {
		err = fmt.Errorf("database.admin_password: %w", err)
		s.end(report.StatusInvalid, err, plan)
		return err
	}
	layout := deploy.NewLayout(cfg, cfg.Targets[0])
	if err := deploy.AcquireLock(ctx, h, layout, deploy.LockInfo{ID: s.id, Who: who(), When: time.Now().UTC(), Message: "rollback to " + m.ID}); err != nil {
		s.end(report.StatusFailed, err, plan)
		return failure{err}
	}
	defer func() {
		if err := deploy.ReleaseLock(context.WithoutCancel(ctx), h, layout, s.id, false); err != nil {
			fmt.Fprintln(c.stderr, "warning:", err)
		}
	}()
	res, err := snapshots.RestoreDatabase(ctx, h, *db, adminPW, store, m, layout.Base, 2)
	if err != nil {
		s.end(report.StatusFailed, err, plan)
		return failure{s.red.Error(err)}
	}
	s.out("database %s restored from %s in %s (the replaced one is kept as %s)\n", db.Name, m.ID, res.Duration.Round(time.Millisecond), res.Replaced)
	suite, err := checks.Verify(ctx, checks.Env{Config: cfg, Resolver: s.res, Dial: h.DialTCP, Categories: []checks.Category{checks.Health}}, checks.Options{Deadline: time.Minute})
	var verr error
	switch {
	case err != nil:
		verr = fmt.Errorf("post-rollback verification could not run: %w", err)
	case suite.Failed():
		verr = errors.New("post-rollback health checks failed")
	}
	if suite != nil {
		s.out("%s", s.red.String(checks.Table(suite)))
	}
	status := report.StatusSucceeded
	if verr != nil {
		status = report.StatusFailed
	}
	path := s.end(status, verr, map[string]any{"plan": plan, "replaced": res.Replaced, "verification": suite})
	s.out("report: %s\n", path)
	return c.failed(s, verr)
}
