package rollout

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// RestorePlan is what a rollback to a snapshot will do, shown before it
// does it.
type RestorePlan struct {
	Snapshot   string                `json:"snapshot"`
	Created    string                `json:"created"`
	Components []snapshots.Component `json:"components"`
	Steps      []string              `json:"steps"`
	Risk       string                `json:"risk"` // low, medium, high
	RiskWhy    string                `json:"risk_reason"`
	Estimate   string                `json:"estimated_duration"`
	// Release is the release the snapshot was taken of.
	Release string `json:"release,omitempty"`
	Image   string `json:"image,omitempty"`
	// DatabaseWhy says why the default plan includes the database.
	DatabaseWhy string `json:"database_reason,omitempty"`
}

// PlanRestore decides what a rollback to m restores. asked is the
// --components list (empty: what the snapshot holds of backend, frontend
// and config, plus the database when its schema differs from now, the
// database's schema now, or either is unknown).
func PlanRestore(cfg *config.Config, m *snapshots.Manifest, asked []string, now *dbschema.Schema) (*RestorePlan, error) {
	has := func(c snapshots.Component) bool { return slices.Contains(m.Components, c) }
	var comps []snapshots.Component
	dbWhy := ""
	if len(asked) == 0 {
		for _, c := range snapshots.ReleaseComponents {
			if has(c) {
				comps = append(comps, c)
			}
		}
		if has(snapshots.ComponentDatabase) && m.Database != nil && !dbschema.Same(m.Database.Schema, now) {
			comps = append(comps, snapshots.ComponentDatabase)
			dbWhy = "the database, because " + dbschema.Change(now, m.Database.Schema) + " (now -> the snapshot's)"
		}
	} else {
		for _, name := range asked {
			c, err := snapshots.ParseComponent(name)
			if err != nil {
				return nil, fmt.Errorf("--components: %w", err)
			}
			if !has(c) {
				return nil, fmt.Errorf("--components: snapshot %s has no %s (it holds: %s)", m.ID, c, snapshots.Names(m.Components))
			}
			if !slices.Contains(comps, c) {
				comps = append(comps, c)
			}
		}
	}
	if len(comps) == 0 {
		return nil, fmt.Errorf("snapshot %s holds nothing to roll back to (components: %s; the database's schema is the same as now)", m.ID, snapshots.Names(m.Components))
	}
	on := func(c snapshots.Component) bool { return slices.Contains(comps, c) }
	if (on(snapshots.ComponentFrontend) || on(snapshots.ComponentConfig)) && !on(snapshots.ComponentBackend) {
		return nil, errors.New("--components: frontend and config are restored with the backend (they switch together through nginx); add backend")
	}
	if on(snapshots.ComponentBackend) && cfg.Frontend != nil && !on(snapshots.ComponentFrontend) && has(snapshots.ComponentFrontend) {
		return nil, errors.New("--components: the backend and frontend of a release switch together; restore both (add frontend)")
	}
	p := &RestorePlan{Snapshot: m.ID, Created: m.Created.Format(time.RFC3339), Components: comps, Release: m.Release, Image: m.Images[snapshots.ComponentBackend], DatabaseWhy: dbWhy}
	var est time.Duration
	p.Steps = append(p.Steps, "verify the SHA-256 of every artifact to restore (nothing changes on a mismatch)", "take the deploy lock")
	if on(snapshots.ComponentDatabase) {
		size := m.Artifacts[snapshots.ComponentDatabase].Size
		est += time.Duration(size/(20<<20))*time.Second + 5*time.Second
		db := cfg.Database
		p.Steps = append(p.Steps, fmt.Sprintf("copy the %s dump to the target, pg_restore --jobs 2 into a fresh database", HumanBytes(size)),
			fmt.Sprintf("swap: %s becomes %s_replaced_<time> (kept), the restored copy becomes %s", db.Name, db.Name, db.Name))
	}
	if on(snapshots.ComponentBackend) {
		est += 10*time.Second + cfg.Backend.HealthGate.Interval.D()*time.Duration(cfg.Backend.HealthGate.ConsecutivePasses)
		p.Steps = append(p.Steps, "pull and start "+m.Images[snapshots.ComponentBackend]+" beside the serving backend, health-gated")
		if on(snapshots.ComponentFrontend) {
			size := m.Artifacts[snapshots.ComponentFrontend].Size
			est += time.Duration(size/(10<<20)) * time.Second
			p.Steps = append(p.Steps, fmt.Sprintf("unpack the %s frontend tarball, upload what differs", HumanBytes(size)))
		}
		if on(snapshots.ComponentConfig) {
			p.Steps = append(p.Steps, "use the snapshot's backend, frontend and domain configuration (secret references resolved now)")
		}
		p.Steps = append(p.Steps, "switch nginx to it; the release switched away from stays warm for backend.rollback_window")
	}
	if on(snapshots.ComponentTLS) {
		p.Steps = append(p.Steps, "restore the certificates, their keys and the ACME account (tls/; the replaced folder kept as tls.replaced), reload nginx")
	}
	if on(snapshots.ComponentMonitoring) {
		p.Steps = append(p.Steps, "restore the monitoring configuration (monitoring/; the replaced folder kept as monitoring.replaced), reload Prometheus")
	}
	p.Steps = append(p.Steps, "verification suite", "release the lock")
	switch {
	case on(snapshots.ComponentDatabase):
		p.Risk, p.RiskWhy = "high", "the database's data goes back to "+p.Created+" (the replaced database is kept)"
	case on(snapshots.ComponentTLS):
		p.Risk, p.RiskWhy = "medium", "the certificates of "+p.Created+" come back (check they are still valid: tls status)"
	case on(snapshots.ComponentConfig):
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
