package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Step names (per-target steps are "<step>:<target>").
const (
	StepLock         = "lock"
	StepPull         = "pull"
	StepMigrate      = "migrate"
	StepStartBackend = "start-backend"
	StepHealthGate   = "health-gate"
	StepUpload       = "upload-frontend"
	StepSwitch       = "switch"
	StepVerify       = "verify"
	StepUnlock       = "unlock"
)

// Plan is the deployment DAG for a configuration, ready to show: the same
// graph `deploy` runs (built by the same code), without running it.
type Plan struct {
	App         string   `json:"app"`
	Environment string   `json:"environment"`
	Targets     []string `json:"targets"`
	Parallel    bool     `json:"parallel"`
	MaxWorkers  int      `json:"max_workers"`
	Stages      []Stage  `json:"stages"`
	// Routing is what nginx does with a request (config.RoutingTable).
	Routing   []string `json:"routing"`
	OnFailure string   `json:"on_failure"`
	// BeforeLock is what runs before the lock is taken when the release is
	// built from source (the Dagger module's deploy without
	// --backend-image): builds, rehearsal, publishing.
	BeforeLock []string `json:"before_lock,omitempty"`
	graph      *pipelines.Graph
}

// Stage is a set of steps whose needs are all in earlier stages.
type Stage struct {
	Number int           `json:"number"`
	Steps  []PlannedStep `json:"steps"`
}

// PlannedStep is one step as shown in a plan.
type PlannedStep struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Needs       []string `json:"needs,omitempty"`
	Timeout     string   `json:"timeout"`
	Attempts    int      `json:"attempts"`
	Always      bool     `json:"always,omitempty"`
}

// NewPlan builds the DAG deploy would run for cfg (with a frontend when the
// configuration has one).
func NewPlan(cfg *config.Config) (*Plan, error) {
	return NewPlanWith(cfg, PlanHooks(cfg, false))
}

// PlanHooks gives a plan the hook steps a deploy of cfg runs: no-op
// functions, since a plan is drawn, never run (rollout sets the real hooks
// under the same conditions).
func PlanHooks(cfg *config.Config, noSnapshot bool) Hooks {
	var h Hooks
	h.Verify = func(context.Context, *remote.Host) error { return nil }
	if cfg.Snapshots.Enabled && !noSnapshot {
		h.BeforeChange = func(context.Context, *remote.Host, *Release) (string, error) { return "", nil }
		h.AfterKeep = func(context.Context, *remote.Host, *Release) error { return nil }
		// Whatever migrates the schema (a migrate_command, or the app at
		// its start), an undone release takes its database back with it.
		if cfg.Database != nil {
			h.RestoreDatabase = func(context.Context, *remote.Host, string) error { return nil }
			h.StageDatabaseUndo = func(context.Context, *remote.Host, string) (func(context.Context) error, func(), error) {
				return nil, nil, nil
			}
		}
	}
	return h
}

// NewPlanWith builds the DAG deploy would run with these hooks.
func NewPlanWith(cfg *config.Config, hooks Hooks) (*Plan, error) {
	d := newDeployment(Request{Config: cfg, ID: "<release>", Image: cfg.Backend.Image + "@sha256:<digest>", Hooks: hooks})
	if cfg.Frontend != nil {
		d.local = &Manifest{}
	}
	steps := d.steps()
	g, err := pipelines.New(steps...)
	if err != nil {
		return nil, fmt.Errorf("deploy plan: %w", err)
	}
	byName := map[string]pipelines.Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	p := &Plan{App: cfg.App, Environment: cfg.Environment, Parallel: cfg.Execution.Parallel, MaxWorkers: cfg.Execution.MaxWorkers, Routing: cfg.RoutingTable(), graph: g}
	if !p.Parallel {
		p.MaxWorkers = 1
	}
	for _, t := range cfg.Targets {
		p.Targets = append(p.Targets, t.Name)
	}
	for i, names := range g.Stages() {
		st := Stage{Number: i + 1}
		for _, n := range names {
			s := byName[n]
			st.Steps = append(st.Steps, PlannedStep{Name: n, Description: s.Description, Needs: s.Needs,
				Timeout: s.Timeout.String(), Attempts: max(s.Retry.Attempts, 1), Always: s.Always})
		}
		p.Stages = append(p.Stages, st)
	}
	p.OnFailure = "the previous release keeps serving: every change to a target is journaled on it before it is made, and undone in reverse (a step that fails before the switch leaves the previous release untouched; a failure after the switch puts it back, its backend still running); the new release's container and folder are removed, and the lock is released (also on Ctrl-C). A run killed after the switch is undone by the target itself (nginx back on the previous release) and the rest by the next run, which also undoes a release that served but was never verified"
	if hooks.Verify != nil && cfg.Rollback.Auto {
		p.OnFailure += fmt.Sprintf("; a rollback trigger after the switch (%d failed health checks in a row within %s, error rate over %g, %gx slower than the baseline, failed checks%s) does the same",
			cfg.Rollback.HealthCheckThreshold, cfg.Rollback.WatchWindow, cfg.Rollback.ErrorRateThreshold, cfg.Rollback.PerformanceDegradationThreshold,
			map[bool]string{true: " including security", false: ""}[cfg.Rollback.OnSecurityFailure])
	}
	if hooks.RestoreDatabase != nil {
		p.OnFailure += "; when the database's schema is no longer the pre-deploy snapshot's (its fingerprint from the catalog differs or cannot be read: whatever migrated it), the database is restored from the pre-deploy snapshot"
	}
	return p, nil
}

// Graph returns the validated DAG.
func (p *Plan) Graph() *pipelines.Graph { return p.graph }

// StepCount is the number of steps.
func (p *Plan) StepCount() int { return p.graph.Len() }

// Text renders the plan for a terminal.
func (p *Plan) Text() string {
	var b strings.Builder
	mode := fmt.Sprintf("up to %d steps at once", p.MaxWorkers)
	if !p.Parallel {
		mode = "one step at a time (execution.parallel is false)"
	}
	fmt.Fprintf(&b, "Deploy plan for %s (%s) to %s: %d steps in %d stages, %s\n",
		p.App, p.Environment, strings.Join(p.Targets, ", "), p.StepCount(), len(p.Stages), mode)
	if len(p.BeforeLock) > 0 {
		fmt.Fprintf(&b, "\nbefore the lock (built from source; a failure here changes nothing on the targets)\n")
		for _, s := range p.BeforeLock {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	width := 0
	for _, st := range p.Stages {
		for _, s := range st.Steps {
			width = max(width, len(s.Name))
		}
	}
	for _, st := range p.Stages {
		note := ""
		if len(st.Steps) > 1 && p.Parallel {
			note = fmt.Sprintf("  (%d in parallel)", min(len(st.Steps), p.MaxWorkers))
		}
		fmt.Fprintf(&b, "\nstage %d%s\n", st.Number, note)
		for _, s := range st.Steps {
			extra := []string{"timeout " + s.Timeout}
			if s.Attempts > 1 {
				extra = append(extra, fmt.Sprintf("%d attempts", s.Attempts))
			}
			if s.Always {
				extra = append(extra, "always runs")
			}
			fmt.Fprintf(&b, "  %-*s  %s [%s]\n", width, s.Name, s.Description, strings.Join(extra, ", "))
		}
	}
	fmt.Fprintf(&b, "\nrouting (nginx)\n")
	for _, r := range p.Routing {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	fmt.Fprintf(&b, "\non failure: %s\n", p.OnFailure)
	return b.String()
}

// JSON renders the plan as indented JSON.
func (p *Plan) JSON() (string, error) {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", err
	}
	return string(data) + "\n", nil
}

func nonEmpty(names ...string) []string {
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// RegistryOf is the registry part of an image reference (before the first /).
func RegistryOf(image string) string {
	host, _, _ := strings.Cut(image, "/")
	return host
}
