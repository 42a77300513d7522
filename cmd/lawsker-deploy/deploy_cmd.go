package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/notify"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/release"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// who names the person and machine behind a deploy (lock, history).
func who() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	if ci := os.Getenv("GITHUB_ACTOR"); ci != "" {
		name = ci + " (GitHub Actions)"
	}
	return name + "@" + host
}

type deployResult struct {
	ID       string                 `json:"id"`
	Status   string                 `json:"status"`
	Targets  []deploy.TargetOutcome `json:"targets"`
	Report   string                 `json:"report"`
	LogFile  string                 `json:"log_file"`
	Duration string                 `json:"duration"`
	Details  any                    `json:"details,omitempty"`
}

func (c *cli) deploy(ctx context.Context, args []string) error {
	fs := c.newFlagSet("deploy")
	image := fs.String("backend-image", "", "backend image pinned by digest: REGISTRY/REPO@sha256:...")
	front := fs.String("frontend-dir", "", "folder with the built frontend files")
	message := fs.String("message", "", "what this release is, for the history and the lock")
	noSnapshot := fs.Bool("no-snapshot", false, "deploy without a pre-deploy snapshot")
	force := fs.Bool("force", false, "deploy even when the same release already serves")
	lockWait := fs.Duration("lock-wait", 0, "wait up to this long for a held deploy lock (in the target's queue, oldest first, showing the holder) instead of failing at once, e.g. 10m")
	supersede := fs.Bool("supersede", false, "with --lock-wait: replace every older deploy of the app waiting for the lock (it exits 4 naming this one), so a burst of pushes deploys only the last")
	canaryHold := fs.Bool("canary-hold", false, "with rollout.canary: stop after the analysis with both releases serving; `promote` or `abort` finishes it")
	var skip stringList
	fs.Var(&skip, "skip-unreachable", "a target (by name; repeat, or comma-separate) the deploy goes on without when it cannot be reached; never the first")
	s, l, err := c.begin("deploy", fs, args)
	if err != nil {
		return err
	}
	if *image == "" {
		s.end(report.StatusInvalid, errors.New("--backend-image is required"), nil)
		return usageError{"deploy: --backend-image is required (REGISTRY/REPO@sha256:...)"}
	}
	if *canaryHold && l.Config.Rollout.Canary == nil {
		err := errors.New("--canary-hold needs rollout.canary in the configuration")
		s.end(report.StatusInvalid, err, nil)
		return usageError{"deploy: " + err.Error()}
	}
	if *lockWait < 0 || *supersede && *lockWait == 0 {
		err := errors.New("--lock-wait must be a positive duration, and --supersede needs it (a deploy replaces others only while they wait)")
		s.end(report.StatusInvalid, err, nil)
		return usageError{"deploy: " + err.Error()}
	}
	ro, err := rollout.Prepare(rollout.Request{Deploy: deploy.Request{Config: l.Config, Resolver: s.res, Image: *image, FrontendDir: *front, Message: *message,
		Who: who(), ID: s.id, NoSnapshot: *noSnapshot, Force: *force, LockWait: *lockWait, Supersede: *supersede, SkipUnreachable: skip, CanaryHold: *canaryHold, Logger: s.log.Logger,
		Waiting: func(msg string) { fmt.Fprintln(c.stderr, s.red.String(msg)) }}})
	if err != nil {
		s.end(report.StatusInvalid, err, nil)
		return err
	}
	defer ro.Close()
	return c.finishRelease(s, s.runRelease(ctx, l.Config, release.Deploy(ro)), "deployed", nil)
}

// releaseDetails is what a deploy report holds beyond the run.
type releaseDetails struct {
	Targets []deploy.TargetOutcome `json:"targets"`
	rollout.Outcome
	Plan          *rollout.RestorePlan `json:"plan,omitempty"`
	Notifications []notify.Delivery    `json:"notifications,omitempty"`
}

// finishRelease shows and records a deploy: targets, snapshots, the
// verification, and the rollback trigger when one fired.
func (c *cli) finishRelease(s *session, r release.Result, verb string, plan *rollout.RestorePlan) error {
	out, outcomes, runErr, res := r.Outcome, r.Targets, r.Err, r.Run
	details := releaseDetails{Targets: outcomes, Outcome: out, Plan: plan, Notifications: r.Notifications}
	// A notification never fails the run: what happened is reported.
	for _, d := range details.Notifications {
		if !d.OK {
			fmt.Fprintf(c.stderr, "warning: %s notification not delivered after %d attempt(s): %s\n", d.Channel, d.Attempts, s.red.String(d.Error))
		}
	}
	if !c.jsonOut {
		if out.PreSnapshot != "" {
			s.out("pre-deploy snapshot: %s\n", out.PreSnapshot)
		}
		if out.Verification != nil {
			s.out("%s", s.red.String(checks.Table(out.Verification)))
		}
		if c := out.Canary; c != nil {
			s.out("canary: %s\n", c)
			if c.Verdict == deploy.CanaryHeld {
				s.out("both releases serve and the deploy lock is kept: `lawsker-deploy promote` sends every client to the new release, `lawsker-deploy abort` puts the previous one back\n")
			}
		}
		if w := out.Watch; w != nil && w.Checks > 0 {
			s.out("watch: %d health checks over %s, %d failed (at most %d in a row; threshold %d)\n", w.Checks, w.Window, w.Failures, w.MaxConsecutive, w.Threshold)
		}
		if t := out.Trigger; t != nil {
			s.out("rollback trigger: %s: %s\n", t.Kind, s.red.String(t.Reason))
		}
		if len(out.ErrorLines) > 0 {
			s.out("error lines of the new release (%s):\n%s", out.ErrorLinesFrom, s.red.String(rollout.FormatErrorLines(out.ErrorLines)))
		} else if out.ErrorLinesFrom != "" && out.ErrorLinesFrom != "the log store" {
			s.out("error lines of the new release: %s\n", s.red.String(out.ErrorLinesFrom))
		}
		if len(out.RolledBack) > 0 {
			s.out("rolled back: %s\n", snapshots.Names(out.RolledBack))
		}
		if out.Database != nil {
			s.out("database: %s\n", out.Database)
		}
		if out.HoldSeconds > 0 {
			s.out("maintenance hold: %.3f s (nginx answered 503 with Retry-After while the database was swapped and the release going back took over)\n", out.HoldSeconds)
		}
		if out.PostSnapshot != "" {
			s.out("post-deploy snapshot: %s\n", out.PostSnapshot)
		}
		if len(out.Pruned) > 0 {
			s.out("snapshots pruned by retention: %s\n", strings.Join(out.Pruned, ", "))
		}
		for _, w := range out.Warnings {
			fmt.Fprintln(c.stderr, "warning:", s.red.String(w))
		}
	}
	return c.finishTargetsWith(s, res, outcomes, verb, details, runErr)
}

func (c *cli) rollback(ctx context.Context, args []string) error {
	fs := c.newFlagSet("rollback")
	previous := fs.Bool("previous", false, "switch back to the warm previous release")
	snapshot := fs.String("snapshot", "", "restore from this snapshot (snap_...)")
	components := fs.String("components", "", "with --snapshot: what to restore, of backend,frontend,config,database,tls,monitoring (default: the release, and the database when its schema differs from now)")
	dryRun := fs.Bool("dry-run", false, "with --snapshot: print the plan, change nothing")
	force := fs.Bool("force", false, "with --previous: switch even when the database's schema is not the one the previous release ran on")
	deployment := fs.String("deployment", "", "roll back to the release of this deploy id: its post-deploy snapshot (the old toolkit's --deployment-id)")
	s, l, err := c.begin("rollback", fs, args)
	if err != nil {
		return err
	}
	if *deployment != "" {
		if *snapshot != "" || *previous {
			s.end(report.StatusInvalid, errors.New("--deployment with --snapshot or --previous"), nil)
			return usageError{"rollback: --deployment ID, --snapshot ID or --previous: one of them"}
		}
		id, err := c.snapshotOfDeployment(ctx, s, l.Config, *deployment)
		if err != nil {
			return err
		}
		s.log.Logger.Info("deployment resolved to its snapshot", "deployment", *deployment, "snapshot", id)
		fmt.Fprintf(c.stderr, "deploy %s: its post-deploy snapshot is %s\n", *deployment, id)
		*snapshot = id
	}
	if *force && !*previous {
		s.end(report.StatusInvalid, errors.New("--force without --previous"), nil)
		return usageError{"rollback: --force goes with --previous (switch back although the schema differs)"}
	}
	switch {
	case *snapshot != "" && *previous:
		s.end(report.StatusInvalid, errors.New("both --previous and --snapshot"), nil)
		return usageError{"rollback: --previous or --snapshot ID, not both"}
	case *snapshot != "":
		return c.rollbackSnapshot(ctx, s, l.Config, *snapshot, *components, *dryRun)
	case !*previous:
		s.end(report.StatusInvalid, errors.New("nothing to roll back to"), nil)
		return usageError{"rollback: pass --previous (the warm previous release) or --snapshot ID (a snapshot's release and, when needed, its database)"}
	}
	d, err := rollout.PrepareSwitchBack(deploy.Request{Config: l.Config, Resolver: s.res, Who: who(), ID: s.id, Logger: s.log.Logger}, *force)
	if err != nil {
		s.end(report.StatusFailed, err, nil)
		return failure{err}
	}
	defer d.Close()
	return c.finishRelease(s, s.runRelease(ctx, l.Config, release.SwitchBack(d)), "switched back", nil)
}

// snapshotOfDeployment is the snapshot that holds deploy id's release: its
// post-deploy snapshot, else the newest taken while it served.
func (c *cli) snapshotOfDeployment(ctx context.Context, s *session, cfg *config.Config, id string) (string, error) {
	store, err := c.openStore(ctx, s, cfg)
	if err != nil {
		return "", err
	}
	defer store.Close()
	ms, _ := snapshots.List(ctx, store.Store)
	var serving string
	for _, m := range ms { // newest first
		if m.DeploymentID == id && m.Trigger == "post-deploy" {
			return m.ID, nil
		}
		if serving == "" && m.Release == id {
			serving = m.ID
		}
	}
	if serving != "" {
		return serving, nil
	}
	err = fmt.Errorf("no snapshot holds the release of deploy %s (`lawsker-deploy snapshot list` shows each snapshot's deploy and release)", id)
	s.end(report.StatusInvalid, err, nil)
	return "", usageError{"rollback: " + err.Error()}
}

func (c *cli) finishTargetsWith(s *session, res *pipelines.Result, outcomes []deploy.TargetOutcome, verb string, details any, runErr error) error {
	s.report.Details = details
	if errors.Is(runErr, deploy.ErrSuperseded) {
		s.report.Status = report.StatusSuperseded
	}
	path := s.write(runErr)
	out := deployResult{ID: s.id, Status: s.report.Status, Targets: outcomes, Report: path, LogFile: s.log.Path, Duration: res.Duration().Round(time.Millisecond).String()}
	if _, plain := details.([]deploy.TargetOutcome); !plain {
		out.Details = details
	}
	if c.jsonOut {
		if err := s.jsonOut(out); err != nil {
			return err
		}
	} else {
		for _, o := range outcomes {
			if o.Converged != "" {
				s.out("%s: %s\n", o.Target, o.Converged)
			}
			switch {
			case o.NoOp != "":
				s.out("%s: nothing to do: %s\n", o.Target, o.NoOp)
			case o.Reverted != "":
				s.out("%s: %s\n", o.Target, o.Reverted)
			case runErr == nil && o.Image != "":
				line := fmt.Sprintf("%s: %s to %s (release %s, port %d", o.Target, verb, o.Image, o.Release, o.Port)
				if o.Previous != "" {
					line += ", previous " + o.Previous + " kept warm"
				}
				if o.Frontend.Uploaded+o.Frontend.Reused > 0 {
					line += fmt.Sprintf(", frontend: %d files uploaded (%d bytes), %d reused, %d removed", o.Frontend.Uploaded, o.Frontend.Bytes, o.Frontend.Reused, o.Frontend.Removed)
				}
				s.out("%s)\n", line)
			}
		}
		s.out("%s in %s; report: %s\n", s.report.Status, out.Duration, path)
	}
	return c.failed(s, runErr)
}

// targetInfo is what `releases` and `lock status` show for one target.
type targetInfo struct {
	Target     string           `json:"target"`
	Releases   []deploy.Release `json:"releases"`
	InProgress *deploy.Journal  `json:"in_progress,omitempty"`
	Lock       *deploy.LockInfo `json:"lock,omitempty"`
	Error      string           `json:"error,omitempty"`
}

// eachTarget connects to every target in turn and calls fn.
func (c *cli) eachTarget(ctx context.Context, s *session, cfg *config.Config, fn func(*remote.Host, deploy.Layout, *targetInfo) error) ([]targetInfo, error) {
	var infos []targetInfo
	var errs []error
	for _, t := range cfg.Targets {
		info := targetInfo{Target: t.Name}
		err := func() error {
			e, err := deploy.Endpoint(t, s.res)
			if err != nil {
				return err
			}
			h, err := remote.Connect(ctx, e, 3)
			if err != nil {
				return err
			}
			defer h.Close()
			return fn(h, deploy.NewLayout(cfg, t), &info)
		}()
		if err != nil {
			info.Error = s.red.String(err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, err))
		}
		infos = append(infos, info)
	}
	return infos, errors.Join(errs...)
}

func readLock(h *remote.Host, l deploy.Layout, info *targetInfo) error {
	li, err := deploy.ReadLock(h, l)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	info.Lock = &li
	return nil
}

func (c *cli) releases(ctx context.Context, args []string) error {
	s, l, err := c.begin("releases", c.newFlagSet("releases"), args)
	if err != nil {
		return err
	}
	infos, runErr := c.eachTarget(ctx, s, l.Config, func(h *remote.Host, lay deploy.Layout, info *targetInfo) error {
		st, err := deploy.LoadState(h, lay)
		if err != nil {
			return err
		}
		info.Releases, info.InProgress = st.Releases, st.InProgress
		return readLock(h, lay, info)
	})
	return c.showTargets(s, infos, runErr, true)
}

func (c *cli) lockCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "release") {
		return usageError{"lock needs a subcommand: status or release [--force]"}
	}
	sub := args[0]
	fs := c.newFlagSet("lock " + sub)
	force := fs.Bool("force", false, "remove the lock whoever holds it (for a deploy that died)")
	s, l, err := c.begin("lock", fs, args[1:])
	if err != nil {
		return err
	}
	infos, runErr := c.eachTarget(ctx, s, l.Config, func(h *remote.Host, lay deploy.Layout, info *targetInfo) error {
		if err := readLock(h, lay, info); err != nil && !*force {
			return err
		}
		if sub == "release" && info.Lock != nil {
			if !*force {
				return fmt.Errorf("held by %s; pass --force to remove it (only when that deploy is dead: a running deploy would lose its lock)", info.Lock)
			}
			if err := deploy.ReleaseLock(ctx, h, lay, "", true); err != nil {
				return err
			}
			s.log.Logger.Warn("lock removed by force", "target", info.Target, "holder", info.Lock.String())
			info.Lock = nil
		}
		return nil
	})
	if err := c.showTargets(s, infos, runErr, false); err != nil || sub != "status" {
		return err
	}
	for _, info := range infos {
		if info.Lock != nil {
			return failureCode(exitLocked) // scripts tell "locked" from "free" (0) and "could not tell" (1)
		}
	}
	return nil
}

func (c *cli) showTargets(s *session, infos []targetInfo, runErr error, withReleases bool) error {
	s.report.Details = infos
	status := report.StatusSucceeded
	if runErr != nil {
		status = report.StatusFailed
	}
	path := s.end(status, runErr, infos)
	if c.jsonOut {
		data, _ := json.MarshalIndent(infos, "", "  ")
		s.out("%s\n", data)
	} else {
		for _, info := range infos {
			s.out("%s:\n", info.Target)
			if info.Error != "" {
				s.out("  error: %s\n", info.Error)
				continue
			}
			if info.Lock != nil {
				s.out("  locked: %s\n", info.Lock)
			} else {
				s.out("  not locked\n")
			}
			if info.InProgress != nil {
				s.out("  interrupted deploy %s (phase %s): the next deploy converges it\n", info.InProgress.ID, info.InProgress.Phase)
			}
			if !withReleases {
				continue
			}
			if len(info.Releases) == 0 {
				s.out("  no releases yet\n")
				continue
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  RELEASE\tSTATUS\tIMAGE\tWHO\tWHEN\tMESSAGE")
			for i := len(info.Releases) - 1; i >= 0; i-- {
				r := info.Releases[i]
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%q\n", r.ID, r.Status, shortImage(r.Image), r.Who, r.When.Local().Format("2006-01-02 15:04"), r.Message)
			}
			tw.Flush()
			s.out("%s", b.String())
		}
		s.out("report: %s\n", path)
	}
	return c.failed(s, runErr)
}

// shortImage keeps the repository's last part and 12 digest characters.
func shortImage(ref string) string {
	repo, digest, ok := strings.Cut(ref, "@sha256:")
	if !ok {
		return ref
	}
	if i := strings.LastIndexByte(repo, '/'); i >= 0 {
		repo = repo[i+1:]
	}
	return repo + "@" + digest[:min(12, len(digest))]
}

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// promote finishes a held canary: every client on the new release.
func (c *cli) promote(ctx context.Context, args []string) error {
	fs := c.newFlagSet("promote")
	s, l, err := c.begin("promote", fs, args)
	if err != nil {
		return err
	}
	held, runErr := rollout.Promote(ctx, l.Config, s.res)
	if c.jsonOut {
		if err := s.jsonOut(held); err != nil {
			return err
		}
	}
	for _, hc := range held {
		if !c.jsonOut {
			s.out("promoted release %s of deploy %s (serving before: %s; canary: %s)\n", hc.Release, hc.Deploy, hc.Previous, hc.Result)
		}
	}
	status := report.StatusSucceeded
	if runErr != nil {
		status = report.StatusFailed
	}
	s.end(status, runErr, held)
	return c.failed(s, runErr)
}

// abortCanary ends a held canary: the previous release alone again, database
// included when the release changed it.
func (c *cli) abortCanary(ctx context.Context, args []string) error {
	fs := c.newFlagSet("abort")
	s, l, err := c.begin("abort", fs, args)
	if err != nil {
		return err
	}
	r, err := rollout.PrepareAbort(ctx, l.Config, s.res, who(), deploy.Request{Logger: s.log.Logger})
	if err != nil {
		s.end(report.StatusFailed, err, nil)
		return c.failed(s, err)
	}
	defer r.Close()
	return c.finishRelease(s, s.runRelease(ctx, l.Config, release.Abort(r)), "aborted", nil)
}
