package rollout

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// Components a snapshot rollback can restore.
var Components = []string{"backend", "frontend", "config", "database", "tls", "monitoring"}

// RestorePlan is what a rollback to a snapshot will do, shown before it
// does it.
type RestorePlan struct {
	Snapshot   string   `json:"snapshot"`
	Created    string   `json:"created"`
	Components []string `json:"components"`
	Steps      []string `json:"steps"`
	Risk       string   `json:"risk"` // low, medium, high
	RiskWhy    string   `json:"risk_reason"`
	Estimate   string   `json:"estimated_duration"`
	// Release is the release the snapshot was taken of.
	Release string `json:"release,omitempty"`
	Image   string `json:"image,omitempty"`
}

// PlanRestore decides what a rollback to m restores. asked is the
// --components list (empty: what the snapshot holds of backend, frontend
// and config, plus the database when its migration version differs from
// nowVersion, the database's version now).
func PlanRestore(cfg *config.Config, m *snapshots.Manifest, asked []string, nowVersion string) (*RestorePlan, error) {
	has := func(c string) bool { return slices.Contains(m.Components, c) }
	var comps []string
	if len(asked) == 0 {
		for _, c := range []string{"backend", "frontend", "config"} {
			if has(c) {
				comps = append(comps, c)
			}
		}
		if has("database") && m.Database != nil && m.Database.MigrationVersion != nowVersion {
			comps = append(comps, "database")
		}
	} else {
		for _, c := range asked {
			c = strings.TrimSpace(c)
			if !slices.Contains(Components, c) {
				return nil, fmt.Errorf("--components: unknown component %q (backend, frontend, config, database, tls, monitoring)", c)
			}
			if !has(c) {
				return nil, fmt.Errorf("--components: snapshot %s has no %s (it holds: %s)", m.ID, c, strings.Join(m.Components, ", "))
			}
			if !slices.Contains(comps, c) {
				comps = append(comps, c)
			}
		}
	}
	if len(comps) == 0 {
		return nil, fmt.Errorf("snapshot %s holds nothing to roll back to (components: %s; the database's migration version is the same)", m.ID, strings.Join(m.Components, ", "))
	}
	on := func(c string) bool { return slices.Contains(comps, c) }
	if (on("frontend") || on("config")) && !on("backend") {
		return nil, errors.New("--components: frontend and config are restored with the backend (they switch together through nginx); add backend")
	}
	if on("backend") && cfg.Frontend != nil && !on("frontend") && has("frontend") {
		return nil, errors.New("--components: the backend and frontend of a release switch together; restore both (add frontend)")
	}
	p := &RestorePlan{Snapshot: m.ID, Created: m.Created.Format(time.RFC3339), Components: comps, Release: m.Release, Image: m.Images["backend"]}
	var est time.Duration
	p.Steps = append(p.Steps, "verify the SHA-256 of every artifact to restore (nothing changes on a mismatch)", "take the deploy lock")
	if on("database") {
		size := m.Artifacts["database"].Size
		est += time.Duration(size/(20<<20))*time.Second + 5*time.Second
		db := cfg.Database
		p.Steps = append(p.Steps, fmt.Sprintf("copy the %s dump to the target, pg_restore --jobs 2 into a fresh database", HumanBytes(size)),
			fmt.Sprintf("swap: %s becomes %s_replaced_<time> (kept), the restored copy becomes %s", db.Name, db.Name, db.Name))
	}
	if on("backend") {
		est += 10*time.Second + cfg.Backend.HealthGate.Interval.D()*time.Duration(cfg.Backend.HealthGate.ConsecutivePasses)
		p.Steps = append(p.Steps, "pull and start "+m.Images["backend"]+" beside the serving backend, health-gated")
		if on("frontend") {
			size := m.Artifacts["frontend"].Size
			est += time.Duration(size/(10<<20)) * time.Second
			p.Steps = append(p.Steps, fmt.Sprintf("unpack the %s frontend tarball, upload what differs", HumanBytes(size)))
		}
		if on("config") {
			p.Steps = append(p.Steps, "use the snapshot's backend, frontend and domain configuration (secret references resolved now)")
		}
		p.Steps = append(p.Steps, "switch nginx to it; the release switched away from stays warm for backend.rollback_window")
	}
	if on("tls") {
		p.Steps = append(p.Steps, "restore the certificates, their keys and the ACME account (tls/; the replaced folder kept as tls.replaced), reload nginx")
	}
	if on("monitoring") {
		p.Steps = append(p.Steps, "restore the monitoring configuration (monitoring/; the replaced folder kept as monitoring.replaced), reload Prometheus")
	}
	p.Steps = append(p.Steps, "verification suite", "release the lock")
	switch {
	case on("database"):
		p.Risk, p.RiskWhy = "high", "the database's data goes back to "+p.Created+" (the replaced database is kept)"
	case on("tls"):
		p.Risk, p.RiskWhy = "medium", "the certificates of "+p.Created+" come back (check they are still valid: tls status)"
	case on("config"):
		p.Risk, p.RiskWhy = "medium", "the release runs with the snapshot's configuration"
	default:
		p.Risk, p.RiskWhy = "low", "a health-gated switch to a known image; the data is untouched"
	}
	p.Estimate = est.Round(time.Second).String()
	return p, nil
}

// HumanBytes renders a size for people (KiB, MiB, GiB).
func HumanBytes(n int64) string {
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

// RestoreRequest is a rollback to a snapshot.
type RestoreRequest struct {
	Config   *config.Config
	Resolver *config.Resolver
	Store    snapshots.Store
	Manifest *snapshots.Manifest
	Plan     *RestorePlan
	ID       string // the rollback's id (also the new release's)
	Who      string
	WorkDir  string // local scratch space for the frontend
	Logger   *slog.Logger
	Roots    *x509.CertPool // verifies TLS in the suite (nil: the system's)
}

// Restore is a prepared rollback to a snapshot.
type Restore struct {
	*Rollout
	plan     *RestorePlan
	dbResult *snapshots.RestoreResult
}

// PrepareRestore checks every artifact to restore against its manifest
// (before anything changes), unpacks the frontend, and builds the graph: a
// deploy of the snapshot's image and frontend (with its configuration when
// asked) whose first change is the database restore, then verification.
// Only the database: the restore under the lock, then verification.
func PrepareRestore(ctx context.Context, req RestoreRequest) (*Restore, error) {
	m, p := req.Manifest, req.Plan
	on := func(c string) bool { return slices.Contains(p.Components, c) }
	for _, c := range p.Components {
		if a, ok := m.Artifacts[c]; ok && c != "frontend" { // the frontend is checked while unpacking
			if err := snapshots.Check(ctx, req.Store, &snapshots.Manifest{ID: m.ID, Artifacts: map[string]snapshots.Artifact{c: a}}); err != nil {
				return nil, fmt.Errorf("nothing was changed: %w", err)
			}
		}
	}
	cfg := req.Config
	if on("config") {
		snap, err := snapshotConfig(ctx, req.Store, m)
		if err != nil {
			return nil, err
		}
		merged := *cfg
		merged.Backend, merged.Frontend, merged.Domains = snap.Backend, snap.Frontend, snap.Domains
		cfg = &merged
	}
	r := &Restore{plan: p}
	dr := deploy.Request{Config: cfg, Resolver: req.Resolver, Who: req.Who, ID: req.ID, NoSnapshot: true, Force: true, Logger: req.Logger,
		Message: "rollback to " + m.ID}
	// A rollback whose verification fails is reported, not reverted: the
	// release it replaced is the one that was rolled back from.
	ro := &Rollout{req: Request{Deploy: dr, Roots: req.Roots}, store: req.Store, keepOnTrigger: true}
	r.Rollout = ro
	if on("database") {
		if cfg.Database == nil {
			return nil, errors.New("--components database: the configuration has no database section")
		}
		if m.Database == nil || m.Database.Name != cfg.Database.Name {
			return nil, fmt.Errorf("snapshot %s holds a dump of database %q, not %q: nothing was changed", m.ID, dbName(m), cfg.Database.Name)
		}
	}
	restoreFolders := func(ctx context.Context, h *remote.Host) error {
		var id age.Identity
		var err error
		for _, c := range []string{"tls", "monitoring"} {
			if !on(c) {
				continue
			}
			if id == nil {
				if id, err = snapshots.Identity(cfg, req.Resolver); err != nil {
					return err
				}
			}
			if err := snapshots.RestoreFolder(ctx, h, req.Store, m, c, deploy.NewLayout(cfg, cfg.Targets[0]).Base, id); err != nil {
				return err
			}
		}
		return nil
	}
	restoreDB := func(ctx context.Context, h *remote.Host, _ *deploy.Release) (string, error) {
		if !on("database") {
			return "", restoreFolders(ctx, h)
		}
		db := cfg.Database
		pw, err := req.Resolver.Resolve(db.AdminPassword)
		if err != nil {
			return "", fmt.Errorf("database.admin_password: %w", err)
		}
		id, err := snapshots.Identity(cfg, req.Resolver)
		if err != nil {
			return "", err
		}
		res, err := snapshots.RestoreDatabase(ctx, h, *db, pw, req.Store, m, snapshots.RestoreOptions{WorkDir: deploy.NewLayout(cfg, cfg.Targets[0]).Base, Jobs: 2, Identity: id})
		if err != nil {
			return "", err
		}
		r.dbResult = res
		ro.setDatabase(DatabaseRestored, fmt.Sprintf("from %s in %s (dump %s); the replaced database is kept as %s", m.ID, res.Duration.Round(time.Millisecond), res.Transfer, res.Replaced))
		return "", restoreFolders(ctx, h)
	}
	if !on("backend") {
		g, err := r.databaseOnly(cfg, req, restoreDB)
		if err != nil {
			return nil, err
		}
		ro.d = g
		return r, nil
	}
	img := m.Images["backend"]
	if err := deploy.CheckImage(cfg, img); err != nil {
		return nil, fmt.Errorf("%w (the snapshot's image; --components config restores the configuration it was deployed with)", err)
	}
	dr.Image = img
	if cfg.Frontend != nil {
		if !on("frontend") {
			return nil, errors.New("the configuration has a frontend, and the snapshot has none to restore")
		}
		dir := filepath.Join(req.WorkDir, "frontend-"+m.ID)
		if err := unpackFrontend(ctx, req.Store, m.ID, m.Artifacts["frontend"], dir); err != nil {
			return nil, err
		}
		dr.FrontendDir = dir
	}
	dr.Hooks = r.convergeHooks()
	dr.Hooks.Verify = ro.verify
	if on("database") || on("tls") || on("monitoring") {
		dr.Hooks.BeforeChange = restoreDB
	}
	ro.req.Deploy = dr
	ro.req.Roots = req.Roots
	d, err := deploy.Prepare(dr)
	if err != nil {
		return nil, err
	}
	ro.d = d
	return r, nil
}

// convergeHooks let a rollback converge an interrupted run, its database
// restore and abandoned restore copies included.
func (r *Restore) convergeHooks() deploy.Hooks {
	return deploy.Hooks{ConvergeDatabase: r.restoreDatabase, AfterConverge: r.afterConverge}
}

func dbName(m *snapshots.Manifest) string {
	if m.Database == nil {
		return ""
	}
	return m.Database.Name
}

// databaseOnly is the graph of a rollback without the release (database,
// tls, monitoring): lock, restore, reloads, verification, unlock.
func (r *Restore) databaseOnly(cfg *config.Config, req RestoreRequest, restoreDB func(context.Context, *remote.Host, *deploy.Release) (string, error)) (*deploy.Deployment, error) {
	return deploy.PrepareLocked(deploy.Request{Config: cfg, Resolver: req.Resolver, Who: req.Who, ID: req.ID, Logger: req.Logger, Message: "rollback to " + req.Manifest.ID,
		Hooks: r.convergeHooks()},
		"restore-database", "restore the database into a fresh one and swap it in",
		func(ctx context.Context, h *remote.Host) error {
			if _, err := restoreDB(ctx, h, nil); err != nil {
				return err
			}
			t := cfg.Targets[0]
			if slices.Contains(req.Plan.Components, "tls") {
				n := deploy.NginxFor(t)
				if _, err := h.Run(ctx, n.Test()...); err != nil {
					return fmt.Errorf("nginx -t with the restored certificates: %w", err)
				}
				if _, err := h.Run(ctx, n.Reload()...); err != nil {
					return err
				}
			}
			if slices.Contains(req.Plan.Components, "monitoring") {
				if err := monitoring.Reload(ctx, h, cfg); err != nil {
					return fmt.Errorf("reloading Prometheus with the restored configuration: %w", err)
				}
			}
			return r.verify(ctx, h)
		})
}

// snapshotConfig reads the configuration a snapshot was taken with.
func snapshotConfig(ctx context.Context, store snapshots.Store, m *snapshots.Manifest) (*config.Config, error) {
	rc, err := store.Open(ctx, m.Artifacts["config"].Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		return nil, err
	}
	l, err := config.Parse(data, config.ImportOptions{})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: its configuration does not load with this lawsker-deploy: %w", m.ID, err)
	}
	return l.Config, nil
}

// unpackFrontend downloads the tarball, checks its SHA-256 and unpacks it
// into dir: regular files and folders only, inside dir.
func unpackFrontend(ctx context.Context, store snapshots.Store, snapshot string, a snapshots.Artifact, dir string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dir), ".frontend-*.tar.gz")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := snapshots.ReadArtifact(ctx, store, snapshot, a, nil, tmp); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(tmp)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Key, err)
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a.Key, err)
		}
		name := filepath.Clean(filepath.FromSlash(hdr.Name))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%s: entry %q leaves the frontend folder", a.Key, hdr.Name)
		}
		p := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry %q is not a regular file or folder", a.Key, hdr.Name)
		}
	}
}

// Finish reads the run: what was restored, the verification, and why it
// failed when it did.
func (r *Restore) Finish(res *pipelines.Result) (Outcome, error) {
	out, err := r.Rollout.Finish(res)
	out.RolledBack = nil
	if out.Trigger != nil && out.Trigger.Kind == TriggerDeployFailure {
		out.Trigger = nil // a failed rollback is no rollback trigger; its error says what failed
	}
	if err == nil {
		out.RolledBack = r.plan.Components
	} else if r.dbResult != nil {
		out.RolledBack = []string{"database"}
	}
	return out, err
}
