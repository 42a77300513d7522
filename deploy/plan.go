package deploy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
)

// Step names shared by the plan and (later) the implementations.
const (
	StepLock         = "lock"
	StepSnapshotPre  = "snapshot-pre"
	StepBuildBackend = "build-backend"
	StepBuildFront   = "build-frontend"
	StepRehearse     = "rehearse-migrations"
	StepPublish      = "publish"
	StepBootstrapDB  = "bootstrap-database"
	StepCertificates = "certificates"
	StepMigrate      = "migrate"
	StepMonitoring   = "monitoring"
	StepVerify       = "verify"
	StepWatch        = "watch"
	StepSnapshotPost = "snapshot-post"
	StepUnlock       = "unlock"
	StepNotify       = "notify"
)

// Per-target steps are named "<step>:<target>".
const (
	StepPull         = "pull"
	StepUpload       = "upload-frontend"
	StepStartBackend = "start-backend"
	StepHealthGate   = "health-gate"
	StepSwitch       = "switch"
)

// Steps returns the deployment DAG for cfg as plan-only steps (no Run).
func Steps(cfg *config.Config) []pipelines.Step {
	def := cfg.Execution.StepTimeout.D()
	network := pipelines.RetryPolicy{Attempts: 3, Initial: 2 * time.Second, Max: 30 * time.Second}
	var steps []pipelines.Step
	add := func(s pipelines.Step) string {
		if s.Timeout == 0 {
			s.Timeout = def
		}
		steps = append(steps, s)
		return s.Name
	}
	targets := make([]string, len(cfg.Targets))
	for i, t := range cfg.Targets {
		targets[i] = t.Name
	}

	lock := add(pipelines.Step{Name: StepLock, Timeout: time.Minute, Description: "take the deploy lock on " + plural(targets, "target")})
	var snapshot string
	if cfg.Snapshots.Enabled {
		snapshot = add(pipelines.Step{Name: StepSnapshotPre, Needs: []string{lock},
			Description: "pre-deploy snapshot (images by digest, database dump, frontend, configuration) to " + cfg.Snapshots.Store})
	}
	build := add(pipelines.Step{Name: StepBuildBackend, Description: "build the backend image from " + cfg.Backend.Context})
	var front string
	if cfg.Frontend != nil {
		front = add(pipelines.Step{Name: StepBuildFront, Description: "build the frontend from " + cfg.Frontend.Source})
	}
	publishNeeds := []string{build}
	migrations := len(cfg.Backend.MigrateCommand) > 0
	if migrations {
		rehearse := add(pipelines.Step{Name: StepRehearse, Needs: nonEmpty(build, snapshot),
			Description: "run `" + strings.Join(cfg.Backend.MigrateCommand, " ") + "` against a throwaway PostgreSQL loaded with the latest snapshot"})
		publishNeeds = append(publishNeeds, rehearse)
	}
	publish := add(pipelines.Step{Name: StepPublish, Needs: publishNeeds, Retry: network,
		Description: "push the backend image to " + registryOf(cfg.Backend.Image) + " (tag = git sha) and pin it by digest"})
	var bootstrap, certs string
	if cfg.Database != nil && cfg.Database.Bootstrap {
		bootstrap = add(pipelines.Step{Name: StepBootstrapDB, Needs: []string{lock},
			Description: "create role " + cfg.Database.User + " and database " + cfg.Database.Name + " when missing"})
	}
	if cfg.TLS.Enabled {
		certs = add(pipelines.Step{Name: StepCertificates, Needs: []string{lock}, Retry: network,
			Description: "obtain or renew certificates for " + plural(cfg.Domains, "domain") + " (" + cfg.TLS.Challenge + ")"})
	}

	pulls := make([]string, len(targets))
	for i, t := range targets {
		pulls[i] = add(pipelines.Step{Name: StepPull + ":" + t, Needs: []string{publish, lock}, Retry: network,
			Description: "pull the backend image by digest on " + t})
	}
	startNeeds := func(i int) []string { return []string{pulls[i]} }
	if migrations {
		migrate := add(pipelines.Step{Name: StepMigrate, Needs: nonEmpty(pulls[0], snapshot, bootstrap),
			Description: "run `" + strings.Join(cfg.Backend.MigrateCommand, " ") + "` once, in the new image, on " + targets[0]})
		startNeeds = func(i int) []string { return []string{pulls[i], migrate} }
	}
	gate := cfg.Backend.HealthGate
	var switches []string
	for i, t := range targets {
		start := add(pipelines.Step{Name: StepStartBackend + ":" + t, Needs: startNeeds(i),
			Description: fmt.Sprintf("start the new backend beside the old one on a free 127.0.0.1 port on %s", t)})
		health := add(pipelines.Step{Name: StepHealthGate + ":" + t, Needs: []string{start}, Timeout: gate.Deadline.D() + 30*time.Second,
			Description: fmt.Sprintf("GET %s until %d passes in a row (every %s, deadline %s)", cfg.Backend.HealthPath, gate.ConsecutivePasses, gate.Interval, gate.Deadline)})
		switchNeeds := []string{health}
		if front != "" {
			switchNeeds = append(switchNeeds, add(pipelines.Step{Name: StepUpload + ":" + t, Needs: []string{front, lock},
				Description: "upload changed frontend files to a new release folder on " + t}))
		}
		switchNeeds = nonEmpty(append(switchNeeds, certs)...)
		switches = append(switches, add(pipelines.Step{Name: StepSwitch + ":" + t, Needs: switchNeeds, Timeout: time.Minute,
			Description: fmt.Sprintf("switch nginx upstream and frontend `current` together (nginx -t, reload) on %s; keep the old backend warm for %s", t, cfg.Backend.RollbackWindow)}))
	}
	verifyNeeds := switches
	if cfg.Monitoring.Enabled {
		verifyNeeds = []string{add(pipelines.Step{Name: StepMonitoring, Needs: switches,
			Description: "render and apply Prometheus rules and Grafana provisioning (promtool-checked)"})}
	}
	verify := add(pipelines.Step{Name: StepVerify, Needs: verifyNeeds,
		Description: "verification suite: " + strings.Join(cfg.Verification.Categories, ", ")})
	last := add(pipelines.Step{Name: StepWatch, Needs: []string{verify}, Timeout: cfg.Rollback.WatchWindow.D() + time.Minute,
		Description: fmt.Sprintf("watch health, error rate and latency for %s against the previous release's baseline", cfg.Rollback.WatchWindow)})
	if cfg.Snapshots.Enabled {
		last = add(pipelines.Step{Name: StepSnapshotPost, Needs: []string{last}, Description: "post-deploy snapshot"})
	}
	unlock := add(pipelines.Step{Name: StepUnlock, Needs: []string{last}, Always: true, Timeout: time.Minute,
		Description: "release the deploy lock (also after a failure or Ctrl-C)"})
	if cfg.Notifications.WebhookURL != "" || cfg.Notifications.Email != "" {
		add(pipelines.Step{Name: StepNotify, Needs: []string{unlock}, Always: true, Timeout: time.Minute,
			Retry:       pipelines.RetryPolicy{Attempts: 3, Initial: time.Second},
			Description: "send the deploy event (webhook/email); a failed notification never fails the deploy"})
	}
	return steps
}

// Plan is the deployment DAG for a configuration, ready to show.
type Plan struct {
	App         string   `json:"app"`
	Environment string   `json:"environment"`
	Targets     []string `json:"targets"`
	Parallel    bool     `json:"parallel"`
	MaxWorkers  int      `json:"max_workers"`
	Stages      []Stage  `json:"stages"`
	OnFailure   string   `json:"on_failure"`
	graph       *pipelines.Graph
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

// NewPlan builds and validates the DAG for cfg.
func NewPlan(cfg *config.Config) (*Plan, error) {
	steps := Steps(cfg)
	g, err := pipelines.New(steps...)
	if err != nil {
		return nil, fmt.Errorf("deploy plan: %w", err)
	}
	byName := map[string]pipelines.Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	p := &Plan{App: cfg.App, Environment: cfg.Environment, Parallel: cfg.Execution.Parallel, MaxWorkers: cfg.Execution.MaxWorkers, graph: g}
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
	switch {
	case cfg.Rollback.Auto && cfg.Snapshots.Enabled:
		p.OnFailure = fmt.Sprintf("automatic rollback to the pre-deploy snapshot (triggers: a failed step, %d failed health checks in a row, error rate over %g, latency over %gx the baseline%s), then verification",
			cfg.Rollback.HealthCheckThreshold, cfg.Rollback.ErrorRateThreshold, cfg.Rollback.PerformanceDegradationThreshold,
			map[bool]string{true: ", a failed security check"}[cfg.Rollback.OnSecurityFailure])
	case cfg.Rollback.Auto:
		p.OnFailure = "automatic switch back to the previous release (still warm); no snapshot, so the database is not restored"
	default:
		p.OnFailure = "stop and report; roll back by hand with `lawsker-deploy rollback --snapshot ID` (rollback.auto is false)"
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
	fmt.Fprintf(&b, "\non failure: %s\n", p.OnFailure)
	return b.String()
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

func plural(items []string, noun string) string {
	if len(items) == 1 {
		return noun + " " + items[0]
	}
	return fmt.Sprintf("%d %ss (%s)", len(items), noun, strings.Join(items, ", "))
}

func registryOf(image string) string {
	host, _, _ := strings.Cut(image, "/")
	return host
}

// JSON renders the plan as indented JSON.
func (p *Plan) JSON() (string, error) {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", err
	}
	return string(data) + "\n", nil
}
