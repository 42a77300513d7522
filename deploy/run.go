package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/config"
	monitoringpkg "github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Request is one deploy of prebuilt artifacts.
type Request struct {
	Config      *config.Config
	Resolver    *config.Resolver
	Image       string // <backend.image>@sha256:...
	FrontendDir string // built files; "" when the app has no frontend
	Message     string
	Who         string // user@host, for the lock and the history
	ID          string // deploy id; also the release id
	NoSnapshot  bool   // deploy without a pre-deploy snapshot
	Force       bool   // deploy even when the same release already serves
	Logger      *slog.Logger
	Hooks       Hooks
	// ACMEClient reaches the ACME server (nil: system roots and
	// tls.acme_ca_bundle).
	ACMEClient *http.Client
}

// Hooks put work of other packages (snapshots, the verification suite)
// into the deploy graph, under the lock. Each nil hook is not run.
type Hooks struct {
	// BeforeChange runs once the first target is locked and converged,
	// before anything changes (migrations, the new backend); current is the
	// serving release (nil before a first deploy). An error stops the
	// deploy with nothing changed.
	BeforeChange func(ctx context.Context, h *remote.Host, current *Release) error
	// Verify runs once every target serves the new release and answered
	// its health check through nginx. An error reverts every target: the
	// previous release serves again and the new one is removed.
	Verify func(ctx context.Context, h *remote.Host) error
	// AfterKeep runs once the release is kept on every target, still under
	// the lock. Its error fails the run; the release stays.
	AfterKeep func(ctx context.Context, h *remote.Host, current *Release) error
	// AfterRevert runs when the deploy did not complete, once every target
	// is back on its previous release; migrated says whether the new
	// release's migrations ran.
	AfterRevert func(ctx context.Context, h *remote.Host, migrated bool) error
}

// Deployment is a prepared deploy: its DAG and, after the run, what
// happened on each target.
type Deployment struct {
	req        Request
	local      *Manifest
	configHash string
	targets    []*targetRun
	migrated   bool // the migration step ran (even when it failed)
	mu         sync.Mutex
	tlsResults []certs.Result
	graph      *pipelines.Graph
	log        *slog.Logger
}

// targetRun is the state of the deploy on one target. Steps of one target
// run one after another (their needs chain), so fields are written by one
// step at a time; mu guards the few read across targets.
type targetRun struct {
	mu        sync.Mutex
	cfg       config.Target
	layout    Layout
	docker    Docker
	nginx     Nginx
	host      *remote.Host
	state     *State
	locked    bool
	previous  *Release // serving before this deploy
	prevMan   *Manifest
	port      int
	container string
	cpus      int
	noop      string // why nothing is to be done, when set
	started   bool
	linked    bool // site link points at the new release
	monitored bool // Prometheus was pointed at the new backend
	tlsOn     bool // the new release's site serves HTTPS
	switched  bool // nginx reloaded with the new release
	completed bool
	reverted  string
	stats     UploadStats
	before    []Release // state.json's history before the switch, for revert
	release   string    // the release now serving when it is not the request's (switch back)
	image     string
}

// TargetOutcome is what a deploy did on one target.
type TargetOutcome struct {
	Target   string      `json:"target"`
	Release  string      `json:"release"`
	Previous string      `json:"previous,omitempty"`
	Image    string      `json:"image"`
	Port     int         `json:"port,omitempty"`
	NoOp     string      `json:"no_op,omitempty"`
	Frontend UploadStats `json:"frontend"`
	Reverted string      `json:"reverted,omitempty"`
}

// Outcomes reports each target after the run.
func (d *Deployment) Outcomes() []TargetOutcome {
	var out []TargetOutcome
	for _, tr := range d.targets {
		tr.mu.Lock()
		o := TargetOutcome{Target: tr.cfg.Name, Release: d.req.ID, Image: d.req.Image, Port: tr.port, NoOp: tr.noop, Frontend: tr.stats, Reverted: tr.reverted}
		if tr.release != "" {
			o.Release, o.Image = tr.release, tr.image
		}
		if tr.previous != nil {
			o.Previous = tr.previous.ID
		}
		tr.mu.Unlock()
		out = append(out, o)
	}
	return out
}

// Graph is the DAG to run.
func (d *Deployment) Graph() *pipelines.Graph { return d.graph }

// Close ends the SSH connections.
func (d *Deployment) Close() {
	for _, tr := range d.targets {
		if tr.host != nil {
			tr.host.Close()
		}
	}
}

// Unsupported lists what the configuration asks for that this version of
// deploy cannot do yet; deploy refuses to start while any is on, rather than
// pretend.
func Unsupported(cfg *config.Config) []string {
	var out []string
	return out
}

// Prepare checks the request and builds the DAG; nothing on any target is
// touched until the graph runs.
func Prepare(req Request) (*Deployment, error) {
	cfg := req.Config
	if err := CheckImage(cfg, req.Image); err != nil {
		return nil, err
	}
	if u := Unsupported(cfg); len(u) > 0 {
		return nil, fmt.Errorf("deploy cannot do everything this configuration asks:\n  %s", strings.Join(u, "\n  "))
	}
	if cfg.Snapshots.Enabled && !req.NoSnapshot && (req.Hooks.BeforeChange == nil || req.Hooks.AfterKeep == nil) {
		return nil, errors.New("snapshots.enabled: this deploy has no pre- and post-deploy snapshot steps; deploy through the rollout package, or pass --no-snapshot")
	}
	d := &Deployment{req: req, log: req.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Frontend != nil && req.FrontendDir == "":
		return nil, errors.New("the configuration has a frontend: pass --frontend-dir with its built files")
	case cfg.Frontend == nil && req.FrontendDir != "":
		return nil, errors.New("--frontend-dir given, but the configuration has no frontend section")
	case req.FrontendDir != "":
		m, err := LocalManifest(req.FrontendDir)
		if err != nil {
			return nil, err
		}
		d.local = m
	}
	d.configHash = configHash(cfg)
	for _, t := range cfg.Targets {
		d.targets = append(d.targets, &targetRun{cfg: t, layout: NewLayout(cfg, t), docker: Docker{Host: t.Docker.Host}, nginx: Nginx{cfg: t.Nginx}})
	}
	g, err := pipelines.New(d.steps()...)
	if err != nil {
		return nil, fmt.Errorf("deploy plan: %w", err)
	}
	d.graph = g
	return d, nil
}

// configHash identifies what of the configuration shapes a release (secret
// references, not their values: rotating a secret needs --force).
func configHash(cfg *config.Config) string {
	data, _ := json.Marshal(struct {
		B config.Backend
		F *config.Frontend
		D *config.Database
		N []config.Nginx
		X []string
	}{cfg.Backend, cfg.Frontend, cfg.Database, nginxes(cfg), cfg.Domains})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func nginxes(cfg *config.Config) []config.Nginx {
	var out []config.Nginx
	for _, t := range cfg.Targets {
		out = append(out, t.Nginx)
	}
	return out
}

// steps is the deploy DAG with its implementations.
func (d *Deployment) steps() []pipelines.Step {
	cfg := d.req.Config
	def := cfg.Execution.StepTimeout.D()
	var steps []pipelines.Step
	add := func(s pipelines.Step) string {
		if s.Timeout == 0 {
			s.Timeout = def
		}
		steps = append(steps, s)
		return s.Name
	}
	network := pipelines.RetryPolicy{Attempts: 3, Initial: time.Second, Max: 5 * time.Second}
	migrations := len(cfg.Backend.MigrateCommand) > 0
	var pulls, prepares, verifies []string
	for _, tr := range d.targets {
		n := tr.cfg.Name
		lock := add(pipelines.Step{Name: StepLock + ":" + n, Timeout: 2 * time.Minute, Retry: network,
			Description: fmt.Sprintf("connect to %s@%s:%d and take the deploy lock", tr.cfg.SSH.User, tr.cfg.Host, tr.cfg.SSH.Port),
			Run:         func(ctx context.Context) error { return d.lock(ctx, tr) }})
		prep := add(pipelines.Step{Name: StepPrepare + ":" + n, Needs: []string{lock},
			Description: "converge an interrupted deploy, write the release folder and env file (0600), pick a port",
			Run:         func(ctx context.Context) error { return d.prepare(ctx, tr) }})
		prepares = append(prepares, prep)
		pulls = append(pulls, add(pipelines.Step{Name: StepPull + ":" + n, Needs: []string{prep},
			Description: "pull " + d.req.Image,
			Run:         func(ctx context.Context) error { return d.pull(ctx, tr) }}))
	}
	first := d.targets[0]
	var before string
	if hk := d.req.Hooks.BeforeChange; hk != nil {
		before = add(pipelines.Step{Name: StepBeforeChange, Needs: []string{StepPrepare + ":" + first.cfg.Name}, Timeout: time.Hour,
			Description: "pre-deploy snapshot of the serving release and its database (before migrations)",
			Run: func(ctx context.Context) error {
				if first.noop != "" {
					return pipelines.Skip("%s", first.noop)
				}
				var cur *Release
				if r, ok := first.state.Current(); ok {
					cur = &r
				}
				return hk(ctx, first.host, cur)
			}})
	}
	var bootstrap string
	if db := cfg.Database; db != nil && db.Bootstrap {
		bootstrap = add(pipelines.Step{Name: StepBootstrapDB, Needs: []string{StepLock + ":" + first.cfg.Name}, Timeout: 2 * time.Minute,
			Description: fmt.Sprintf("create role %s and database %s when missing (as %s, from %s)", db.User, db.Name, db.AdminUser, first.cfg.Name),
			Run:         func(ctx context.Context) error { return d.bootstrapDB(ctx, first) }})
	}
	var migrate string
	if migrations {
		migrate = add(pipelines.Step{Name: StepMigrate, Needs: nonEmpty(append([]string{pulls[0], bootstrap, before}, prepares...)...),
			Description: "run `" + strings.Join(cfg.Backend.MigrateCommand, " ") + "` once, in the new image, on " + d.targets[0].cfg.Name,
			Run:         func(ctx context.Context) error { return d.migrate(ctx, d.targets[0]) }})
	}
	for i, tr := range d.targets {
		n := tr.cfg.Name
		start := add(pipelines.Step{Name: StepStartBackend + ":" + n, Needs: nonEmpty(pulls[i], migrate, before),
			Description: "start the new backend beside the old one",
			Run:         func(ctx context.Context) error { return d.start(ctx, tr) }})
		gate := cfg.Backend.HealthGate
		health := add(pipelines.Step{Name: StepHealthGate + ":" + n, Needs: []string{start}, Timeout: gate.Deadline.D() + 30*time.Second,
			Description: fmt.Sprintf("GET %s until %d passes in a row (every %s, deadline %s)", cfg.Backend.HealthPath, gate.ConsecutivePasses, gate.Interval, gate.Deadline),
			Run:         func(ctx context.Context) error { return d.health(ctx, tr) }})
		switchNeeds := []string{health}
		if d.local != nil {
			switchNeeds = append(switchNeeds, add(pipelines.Step{Name: StepUpload + ":" + n, Needs: []string{prepares[i]},
				Description: "upload changed frontend files into the release folder",
				Run:         func(ctx context.Context) error { return d.upload(ctx, tr) }}))
		}
		sw := add(pipelines.Step{Name: StepSwitch + ":" + n, Needs: switchNeeds, Timeout: 2 * time.Minute,
			Description: "point nginx at the new release (nginx -t, reload): backend and frontend switch together",
			Run:         func(ctx context.Context) error { return d.switchOver(ctx, tr) }})
		verifies = append(verifies, add(pipelines.Step{Name: StepVerify + ":" + n, Needs: []string{sw}, Timeout: time.Minute,
			Description: "GET " + cfg.Backend.HealthPath + " through nginx",
			Run:         func(ctx context.Context) error { return d.verify(ctx, tr) }}))
	}
	kept := verifies
	if cfg.TLS.Enabled {
		kept = []string{add(pipelines.Step{Name: StepCertificates, Needs: verifies, Timeout: 15 * time.Minute,
			Description: fmt.Sprintf("check DNS, obtain or renew certificates for %s (%s), install them, switch the site to HTTPS", strings.Join(cfg.Domains, ", "), cfg.TLS.Challenge),
			Run:         func(ctx context.Context) error { return d.certificates(ctx) }})}
	}
	if cfg.Monitoring.Enabled {
		kept = []string{add(pipelines.Step{Name: StepMonitoring, Needs: kept, Timeout: 5 * time.Minute,
			Description: "render Prometheus config, alert rules and Grafana provisioning for the new backend, check them with promtool, apply on " + first.cfg.Name + " (Prometheus reloads without a restart)",
			Run:         func(ctx context.Context) error { return d.monitoring(ctx, first) }})}
	}
	if hk := d.req.Hooks.Verify; hk != nil {
		kept = []string{add(pipelines.Step{Name: StepVerifyRelease, Needs: kept, Timeout: time.Hour,
			Description: "verification suite and watch window; a trigger rolls every target back",
			Run: func(ctx context.Context) error {
				if d.allNoop() {
					return pipelines.Skip("%s", first.noop)
				}
				return hk(ctx, first.host)
			}})}
	}
	var prunes []string
	for _, tr := range d.targets {
		prunes = append(prunes, add(pipelines.Step{Name: StepPrune + ":" + tr.cfg.Name, Needs: kept, Timeout: 5 * time.Minute,
			Description: fmt.Sprintf("keep %d releases; stop the previous backend after %s", cfg.Backend.KeepReleases, cfg.Backend.RollbackWindow),
			Run:         func(ctx context.Context) error { return d.prune(ctx, tr) }}))
	}
	var after string
	if hk := d.req.Hooks.AfterKeep; hk != nil {
		after = add(pipelines.Step{Name: StepAfterKeep, Needs: prunes, Timeout: time.Hour,
			Description: "post-deploy snapshot of the new release, its database and its verification baseline",
			Run: func(ctx context.Context) error {
				if d.allNoop() {
					return pipelines.Skip("%s", first.noop)
				}
				r, ok := first.state.Current()
				if !ok {
					return errors.New("post-deploy: state.json has no current release")
				}
				return hk(ctx, first.host, &r)
			}})
	}
	var reverts []string
	for i, tr := range d.targets {
		reverts = append(reverts, add(pipelines.Step{Name: StepRevert + ":" + tr.cfg.Name, Needs: nonEmpty(prunes[i], after), Always: true, Timeout: 3 * time.Minute,
			Description: "on failure or Ctrl-C: put the previous release back and remove the new one",
			Run:         func(ctx context.Context) error { return d.revert(ctx, tr) }}))
	}
	var afterRevert string
	if hk := d.req.Hooks.AfterRevert; hk != nil {
		afterRevert = add(pipelines.Step{Name: StepAfterRevert, Needs: reverts, Always: true, Timeout: time.Hour,
			Description: "when the deploy was reverted after its migrations changed the schema: restore the database from the pre-deploy snapshot",
			Run: func(ctx context.Context) error {
				if d.completed() {
					return pipelines.Skip("the deploy completed")
				}
				if first.host == nil || !first.locked {
					return pipelines.Skip("nothing was changed (the lock was never taken)")
				}
				return hk(ctx, first.host, d.migrated)
			}})
	}
	for i, tr := range d.targets {
		add(pipelines.Step{Name: StepUnlock + ":" + tr.cfg.Name, Needs: nonEmpty(reverts[i], afterRevert), Always: true, Timeout: time.Minute,
			Description: "release the deploy lock",
			Run:         func(ctx context.Context) error { return d.unlock(ctx, tr) }})
	}
	return steps
}

// Per-target step names beyond plan.go's.
const (
	StepPrepare     = "prepare"
	StepBootstrapDB = "bootstrap-database"
	StepPrune       = "prune"
	StepRevert      = "revert"
	// Hook steps (Request.Hooks).
	StepBeforeChange  = "snapshot-before"
	StepVerifyRelease = "verify-release"
	StepAfterKeep     = "snapshot-after"
	StepAfterRevert   = "restore-database"
	StepCertificates  = "certificates"
	StepMonitoring    = "monitoring"
)

// allNoop reports whether every target already serves the requested release.
func (d *Deployment) allNoop() bool {
	for _, tr := range d.targets {
		if tr.noop == "" {
			return false
		}
	}
	return true
}

// completed reports whether the release was kept on every target.
func (d *Deployment) completed() bool {
	for _, tr := range d.targets {
		tr.mu.Lock()
		done := tr.completed
		tr.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

// Endpoint is how to reach a target, with its SSH key resolved (an empty
// ssh.key means the SSH agent).
func Endpoint(t config.Target, res *config.Resolver) (remote.Endpoint, error) {
	e := remote.Endpoint{Name: t.Name, Host: t.Host, Port: t.SSH.Port, User: t.SSH.User, KnownHosts: t.SSH.KnownHosts,
		TrustOnFirstUse: t.SSH.TrustOnFirstUse, ConnectTimeout: t.SSH.ConnectTimeout.D()}
	if !t.SSH.Key.IsZero() {
		key, err := res.Resolve(t.SSH.Key)
		if err != nil {
			return e, fmt.Errorf("ssh.key: %w", err)
		}
		e.PrivateKey = []byte(key)
	}
	return e, nil
}

func (d *Deployment) lock(ctx context.Context, tr *targetRun) error {
	if tr.host == nil {
		e, err := Endpoint(tr.cfg, d.req.Resolver)
		if err != nil {
			return err
		}
		h, err := remote.Connect(ctx, e, 1)
		var ne *remote.NetError
		if errors.As(err, &ne) {
			return pipelines.Retriable(err)
		}
		if err != nil {
			return err
		}
		tr.host = h
	}
	err := AcquireLock(ctx, tr.host, tr.layout, LockInfo{ID: d.req.ID, Who: d.req.Who, When: time.Now().UTC(), Version: d.req.Image, Message: d.req.Message})
	if err != nil {
		return err
	}
	tr.mu.Lock()
	tr.locked = true
	tr.mu.Unlock()
	return nil
}

func (d *Deployment) prepare(ctx context.Context, tr *targetRun) error {
	h, l := tr.host, tr.layout
	st, err := d.loadState(ctx, tr)
	if err != nil {
		return err
	}
	if cur, ok := st.Current(); ok {
		c := cur
		tr.mu.Lock()
		tr.previous = &c
		tr.mu.Unlock()
		if !d.req.Force && cur.Image == d.req.Image && cur.ConfigHash == d.configHash && (d.local == nil || cur.FrontendHash == d.local.Hash) {
			tr.mu.Lock()
			tr.noop = fmt.Sprintf("release %s already serves %s with this frontend and configuration (--force redeploys)", cur.ID, cur.Image)
			tr.mu.Unlock()
			return pipelines.Skip("%s", tr.noop)
		}
		if tr.prevMan, err = ReadManifest(h, l.Manifest(cur.ID)); err != nil {
			return err
		}
	}
	if err := h.MkdirAll(l.Release(d.req.ID)); err != nil {
		return err
	}
	if tr.cpus, err = countCPUs(ctx, h); err != nil {
		return err
	}
	used := map[int]bool{}
	for _, r := range st.Releases {
		if r.Status != StatusRetired {
			used[r.Port] = true
		}
	}
	port, err := FreePort(ctx, h, d.req.Config.Backend.HostPortMin, d.req.Config.Backend.HostPortMax, used)
	if err != nil {
		return err
	}
	tr.mu.Lock()
	tr.port, tr.container = port, l.Container(d.req.ID)
	tr.mu.Unlock()
	env, err := d.envFile(tr)
	if err != nil {
		return err
	}
	if err := h.WriteFile(l.EnvFile(d.req.ID), env, 0o600); err != nil {
		return err
	}
	st.InProgress = &Journal{ID: d.req.ID, Phase: PhasePrepared, Container: tr.container, Port: port, Started: time.Now().UTC()}
	return SaveState(h, l, st)
}

// countCPUs reads the target's online CPUs from /sys over SFTP (no shell
// session); nproc is the fallback.
func countCPUs(ctx context.Context, h *remote.Host) (int, error) {
	if data, err := h.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if n, ok := parseCPUList(strings.TrimSpace(string(data))); ok {
			return n, nil
		}
	}
	out, err := h.Run(ctx, "nproc")
	if err != nil {
		return 0, fmt.Errorf("counting the target's CPUs: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("counting the target's CPUs: nproc printed %q", strings.TrimSpace(out))
	}
	return n, nil
}

// parseCPUList counts a Linux CPU list such as "0-3,6,8-9".
func parseCPUList(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, false
			}
		}
		n += b - a + 1
	}
	return n, true
}

func (d *Deployment) envFile(tr *targetRun) ([]byte, error) {
	b := d.req.Config.Backend
	vars := map[string]string{}
	for k, v := range b.Env {
		vars[k] = v
	}
	for k, ref := range b.SecretEnv {
		v, err := d.req.Resolver.Resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("backend.secret_env.%s: %w", k, err)
		}
		vars[k] = v
	}
	if db := d.req.Config.Database; db != nil {
		size, overflow := PoolSize(tr.cpus)
		vars[db.PoolSizeEnv], vars[db.MaxOverflowEnv] = strconv.Itoa(size), strconv.Itoa(overflow)
	}
	if b.Network == "host" {
		vars[b.PortEnv] = strconv.Itoa(tr.port)
	}
	return EnvFile(vars)
}

func (d *Deployment) bootstrapDB(ctx context.Context, tr *targetRun) error {
	r, err := BootstrapDatabase(ctx, *d.req.Config.Database, d.req.Resolver, tr.host.DialTCP)
	if err != nil {
		return err
	}
	d.log.Info("database ready", "role_created", r.RoleCreated, "database_created", r.DatabaseCreated)
	return nil
}

func (d *Deployment) pull(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	if reg := d.req.Config.Registry; reg != nil && reg.Username != "" {
		pw, err := d.req.Resolver.Resolve(reg.Password)
		if err != nil {
			return fmt.Errorf("registry.password: %w", err)
		}
		if _, err := tr.host.RunInput(ctx, strings.NewReader(pw), tr.docker.Login(reg.Host, reg.Username)...); err != nil {
			return fmt.Errorf("docker login to %s: %w", reg.Host, err)
		}
	}
	// A digest names its content: when the host has it, there is nothing
	// to pull (and no registry round trip).
	have := remote.Quote(tr.docker.cmd("image", "inspect", "--format", "{{.Id}}", d.req.Image)...)
	if _, err := tr.host.Run(ctx, "sh", "-c", have+" >/dev/null 2>&1 || "+remote.Quote(tr.docker.Pull(d.req.Image)...)); err != nil {
		return fmt.Errorf("pulling the backend image (is %s in the registry?): %w", d.req.Image, err)
	}
	return nil
}

func (d *Deployment) spec(tr *targetRun, name string, detach bool, command []string) ContainerSpec {
	b := d.req.Config.Backend
	return ContainerSpec{Name: name, App: tr.layout.App, Base: tr.layout.Base, Release: d.req.ID, Image: d.req.Image, EnvFile: tr.layout.EnvFile(d.req.ID),
		Network: b.Network, PortEnv: b.PortEnv, HostPort: tr.port, ContainerPort: b.Port, Command: command, Detach: detach}
}

func (d *Deployment) migrate(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	name := tr.layout.Migration(d.req.ID)
	d.migrated = true
	spec := d.spec(tr, name, false, d.req.Config.Backend.MigrateCommand)
	spec.HostPort = 0 // a one-off: no port
	out, err := tr.host.Run(ctx, tr.docker.Run(spec)...)
	if err != nil {
		// Paired cleanup: a cancelled or failed one-off must not linger.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = tr.host.Run(cctx, tr.docker.Remove(name)...)
		return fmt.Errorf("migration `%s` failed; nothing was switched: %w", strings.Join(d.req.Config.Backend.MigrateCommand, " "), err)
	}
	d.log.Info("migration done", "target", tr.cfg.Name, "output", lastLine(out))
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (d *Deployment) start(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	tr.mu.Lock()
	tr.started = true // from here on, revert removes the container
	tr.mu.Unlock()
	if _, err := tr.host.Run(ctx, tr.docker.Run(d.spec(tr, tr.container, true, nil))...); err != nil {
		return fmt.Errorf("starting the new backend: %w", err)
	}
	tr.state.InProgress.Phase = PhaseStarted
	return SaveState(tr.host, tr.layout, tr.state)
}

func (d *Deployment) health(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	b := d.req.Config.Backend
	err := HealthGate(ctx, tr.host, tr.port, b.HealthPath, hostHeader(d.req.Config), b.HealthGate)
	if err == nil {
		// The answers must have come from our container: one that failed
		// to bind (the port taken between the probe and the start) exits or
		// restarts, while something else may answer on the port.
		err = d.stillRunning(ctx, tr)
	}
	if err == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	// The container's stdout and stderr both, in order.
	logs, lerr := tr.host.Run(cctx, "sh", "-c", remote.Quote(tr.docker.Logs(tr.container, 40)...)+" 2>&1")
	if lerr != nil {
		logs = "(its logs could not be read: " + lerr.Error() + ")"
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, tr.container, strings.TrimSpace(logs))
}

// nginxAddr is where the app's site listens, as reached on the target.
func nginxAddr(n config.Nginx) string {
	a := n.ListenAddress
	if a == "" || a == "0.0.0.0" || a == "::" {
		a = "127.0.0.1"
	}
	return net.JoinHostPort(a, strconv.Itoa(n.Listen))
}

func nginxTLSAddr(n config.Nginx) string {
	a := n.ListenAddress
	if a == "" || a == "0.0.0.0" || a == "::" {
		a = "127.0.0.1"
	}
	return net.JoinHostPort(a, strconv.Itoa(n.ListenTLS))
}

// stillRunning checks the new container runs and never restarted.
func (d *Deployment) stillRunning(ctx context.Context, tr *targetRun) error {
	out, err := tr.host.Run(ctx, tr.docker.cmd("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", tr.container)...)
	if err != nil {
		return fmt.Errorf("health gate: inspecting %s: %w", tr.container, err)
	}
	if f := strings.Fields(out); len(f) != 2 || f[0] != "true" || f[1] != "0" {
		return fmt.Errorf("health gate: the checks passed but %s is not running steadily (running, restarts: %s): something else answers on 127.0.0.1:%d", tr.container, strings.TrimSpace(out), tr.port)
	}
	return nil
}

func hostHeader(cfg *config.Config) string {
	if len(cfg.Domains) > 0 && !strings.HasPrefix(cfg.Domains[0], "*.") {
		return cfg.Domains[0]
	}
	return ""
}

func (d *Deployment) upload(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	l := tr.layout
	prevDir := ""
	if tr.previous != nil && tr.prevMan != nil {
		prevDir = l.Frontend(tr.previous.ID)
	}
	st, err := UploadFrontend(ctx, tr.host, d.req.FrontendDir, l.Frontend(d.req.ID), d.local, tr.prevMan, prevDir)
	tr.mu.Lock()
	tr.stats = st
	tr.mu.Unlock()
	if err != nil {
		return err
	}
	data, _ := json.MarshalIndent(d.local, "", "  ")
	return tr.host.WriteFile(l.Manifest(d.req.ID), data, 0o644)
}

func (d *Deployment) switchOver(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	h, l, cfg := tr.host, tr.layout, d.req.Config
	listen := strconv.Itoa(tr.cfg.Nginx.Listen)
	if a := tr.cfg.Nginx.ListenAddress; a != "" {
		listen = net.JoinHostPort(a, listen)
	}
	if err := d.writeSite(tr); err != nil {
		return err
	}
	tr.state.InProgress.Phase = PhaseSwitching
	if err := SaveState(h, l, tr.state); err != nil {
		return err
	}
	if err := h.MkdirAll(path.Dir(l.SitePath)); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.linked = true
	tr.mu.Unlock()
	if err := h.Symlink(ctx, l.SiteConf(d.req.ID), l.SitePath); err != nil {
		return err
	}
	if _, err := h.Run(ctx, tr.nginx.Test()...); err != nil {
		return fmt.Errorf("nginx -t refused the new site configuration (nothing was reloaded): %w", err)
	}
	// From here the reload may have happened whatever the result says, so
	// a failure counts as switched (revert then reloads the old site back).
	tr.mu.Lock()
	tr.switched = true
	tr.mu.Unlock()
	if _, err := h.RunScript(ctx, nil, append([][]string{tr.nginx.Reload()}, remote.SymlinkCmds(l.Release(d.req.ID), l.Current())...)...); err != nil {
		return fmt.Errorf("nginx reload: %w", err)
	}
	if err := WaitServing(ctx, h, "http://"+nginxAddr(tr.cfg.Nginx), d.req.Config.Backend.HealthPath, hostHeader(cfg), d.req.ID, 15*time.Second); err != nil {
		return err
	}
	if err := h.WriteFile(l.CurrentContainer(), []byte(tr.container+"\n"), 0o644); err != nil {
		return err
	}
	return d.recordCurrent(tr)
}

// siteData is the new release's site on a target: HTTPS servers when every
// domain's certificate is installed there (tls.enabled), else HTTP with the
// ACME webroot.
func (d *Deployment) siteData(tr *targetRun) (SiteData, bool) {
	cfg, l := d.req.Config, tr.layout
	listen := strconv.Itoa(tr.cfg.Nginx.Listen)
	if a := tr.cfg.Nginx.ListenAddress; a != "" {
		listen = net.JoinHostPort(a, listen)
	}
	data := SiteData{App: cfg.App, Release: d.req.ID, Listen: listen, ServerNames: ServerNames(cfg.Domains),
		Upstream: fmt.Sprintf("127.0.0.1:%d", tr.port), Webroot: certs.Webroot(l.Base)}
	if d.local != nil {
		data.Frontend = l.Frontend(d.req.ID)
	}
	if !cfg.TLS.Enabled {
		return data, false
	}
	var servers []TLSServer
	for _, dom := range cfg.Domains {
		c, err := certs.ReadInstalled(tr.host, l.Base, dom)
		if err != nil || c == nil {
			return data, false // not yet: the certificates step issues them, then renders TLS
		}
		servers = append(servers, TLSServer{Name: dom, Cert: certs.CertPath(l.Base, dom), Key: certs.KeyPath(l.Base, dom), Stapling: len(c.OCSPServer) > 0})
	}
	data.TLS = servers
	data.ListenTLS = strconv.Itoa(tr.cfg.Nginx.ListenTLS)
	if a := tr.cfg.Nginx.ListenAddress; a != "" {
		data.ListenTLS = net.JoinHostPort(a, data.ListenTLS)
	}
	return data, true
}

// writeSite renders and writes the new release's site file.
func (d *Deployment) writeSite(tr *targetRun) error {
	data, tlsOn := d.siteData(tr)
	site, err := RenderSite(data)
	if err != nil {
		return err
	}
	if err := tr.host.MkdirAll(data.Webroot); err != nil {
		return err
	}
	if err := tr.host.WriteFile(tr.layout.SiteConf(d.req.ID), site, 0o644); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.tlsOn = tlsOn
	tr.mu.Unlock()
	return nil
}

// certificates issues or renews every domain's certificate (tls.enabled)
// on all targets, then turns HTTPS on where the site still lacks it
// (nginx -t, reload). A domain left without a valid certificate fails the
// step, so the deploy is reverted; a failed renewal of a still-valid
// certificate is reported and the serving one stays.
func (d *Deployment) certificates(ctx context.Context) error {
	if d.allNoop() {
		return pipelines.Skip("%s", d.targets[0].noop)
	}
	var ts []certs.Target
	for _, tr := range d.targets {
		ts = append(ts, certs.Target{Name: tr.cfg.Name, Host: tr.host, Base: tr.layout.Base})
	}
	m, err := certs.New(d.req.Config, d.req.Resolver, ts)
	if err != nil {
		return err
	}
	m.HTTPClient = d.req.ACMEClient
	res, err := m.Issue(ctx, false)
	d.mu.Lock()
	d.tlsResults = res
	d.mu.Unlock()
	if err != nil {
		return err
	}
	for _, tr := range d.targets {
		if tr.noop != "" || tr.tlsOn {
			continue
		}
		if err := d.writeSite(tr); err != nil {
			return err
		}
		if !tr.tlsOn {
			return fmt.Errorf("%s: the certificates are not all installed after issuance", tr.cfg.Name)
		}
		if _, err := tr.host.Run(ctx, tr.nginx.Test()...); err != nil {
			return fmt.Errorf("%s: nginx -t refused the HTTPS site (the HTTP one keeps serving): %w", tr.cfg.Name, err)
		}
		if _, err := tr.host.Run(ctx, tr.nginx.Reload()...); err != nil {
			return fmt.Errorf("%s: nginx reload: %w", tr.cfg.Name, err)
		}
		if err := WaitServing(ctx, tr.host, "https://"+nginxTLSAddr(tr.cfg.Nginx), d.req.Config.Backend.HealthPath, hostHeader(d.req.Config), d.req.ID, 15*time.Second); err != nil {
			return fmt.Errorf("%s: HTTPS: %w", tr.cfg.Name, err)
		}
	}
	return nil
}

// monitoring points Prometheus at the new backend: render, promtool, apply
// on the first target. When the deploy is reverted after this, revert
// points it back at the previous backend.
func (d *Deployment) monitoring(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	tr.mu.Lock()
	tr.monitored = true
	tr.mu.Unlock()
	return d.applyMonitoring(ctx, tr, tr.port, d.req.ID, true)
}

func (d *Deployment) applyMonitoring(ctx context.Context, tr *targetRun, port int, release string, check bool) error {
	files, err := monitoringpkg.Render(d.req.Config, monitoringpkg.Input{Backends: []string{fmt.Sprintf("127.0.0.1:%d", port)}, Release: release})
	if err != nil {
		return err
	}
	if check {
		if err := monitoringpkg.Check(ctx, files); err != nil {
			return err
		}
	}
	res, err := monitoringpkg.Apply(ctx, d.req.Config, d.req.Resolver, monitoringpkg.Target{Host: tr.host, Base: tr.layout.Base, App: d.req.Config.App, Docker: tr.docker}, files)
	if err != nil {
		return err
	}
	d.log.Info("monitoring applied", "release", release, "prometheus", res.Prometheus, "grafana", res.Grafana)
	return nil
}

// TLSResults are what the certificates step did (nil without TLS).
func (d *Deployment) TLSResults() []certs.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tlsResults
}

// recordCurrent makes the new release current in state.json: the old
// current becomes previous (kept warm), an older previous is retired.
func (d *Deployment) recordCurrent(tr *targetRun) error {
	st := tr.state
	tr.before = append([]Release(nil), st.Releases...)
	for i := range st.Releases {
		switch st.Releases[i].Status {
		case StatusCurrent:
			st.Releases[i].Status = StatusPrevious
		case StatusPrevious:
			st.Releases[i].Status = StatusRetired
		}
	}
	fh := ""
	if d.local != nil {
		fh = d.local.Hash
	}
	st.Releases = append(st.Releases, Release{ID: d.req.ID, Image: d.req.Image, FrontendHash: fh, ConfigHash: d.configHash,
		Container: tr.container, Port: tr.port, Who: d.req.Who, When: time.Now().UTC(), Message: d.req.Message, Status: StatusCurrent})
	st.InProgress = nil
	return SaveState(tr.host, tr.layout, st)
}

func (d *Deployment) verify(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return pipelines.Skip("%s", tr.noop)
	}
	g := d.req.Config.Backend.HealthGate
	g.ConsecutivePasses = 1
	g.Deadline = config.Duration(20 * time.Second)
	base := "http://" + nginxAddr(tr.cfg.Nginx)
	if tr.tlsOn {
		base = "https://" + nginxTLSAddr(tr.cfg.Nginx)
	}
	if err := healthThrough(ctx, tr.host, base, d.req.Config.Backend.HealthPath, hostHeader(d.req.Config), g); err != nil {
		return fmt.Errorf("through nginx: %w", err)
	}
	return nil
}

func (d *Deployment) prune(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		tr.mu.Lock()
		tr.completed = true
		tr.mu.Unlock()
		return pipelines.Skip("%s", tr.noop)
	}
	h, l, st := tr.host, tr.layout, tr.state
	keep := d.req.Config.Backend.KeepReleases
	var kept []Release
	var dirs []string
	var later [][]string // slow cleanups, done on the target in the background
	for i, r := range st.Releases {
		if r.Status == StatusRetired {
			later = append(later, tr.docker.Remove(r.Container))
		}
		if len(st.Releases)-i > keep && r.Status == StatusRetired {
			dirs = append(dirs, l.Release(r.ID))
			later = append(later, tr.docker.RemoveImage(r.Image)) // docker keeps an image a kept release uses
			continue
		}
		kept = append(kept, r)
	}
	if len(dirs) > 0 {
		if _, err := h.Run(ctx, append([]string{"rm", "-rf", "--"}, dirs...)...); err != nil {
			return fmt.Errorf("prune: removing old release folders: %w", err)
		}
	}
	st.Releases = kept
	if err := SaveState(h, l, st); err != nil {
		return err
	}
	prev, hasPrev := st.Previous()
	script := background(later)
	if hasPrev {
		script += "; " + stopAfter(tr.docker, l, prev.Container, d.req.Config.Backend.RollbackWindow.D())
	}
	if err := detach(ctx, h, script); err != nil {
		return fmt.Errorf("prune: scheduling the clean-up: %w", err)
	}
	tr.mu.Lock()
	tr.completed = true
	tr.mu.Unlock()
	return nil
}

// background renders commands to run one after another, each allowed to
// fail (a retired container already gone, an image still in use): the next
// prune finds what is left and tries again.
func background(cmds [][]string) string {
	parts := []string{"true"}
	for _, c := range cmds {
		parts = append(parts, remote.Quote(c...)+" >/dev/null 2>&1")
	}
	return strings.Join(parts, "; ")
}

// stopAfter renders the delayed stop of the previous backend: after the
// rollback window, unless by then it is serving again (a switch back made
// it current).
func stopAfter(dk Docker, l Layout, container string, window time.Duration) string {
	return fmt.Sprintf(`sleep %d; if [ "$(cat %s 2>/dev/null)" != %s ]; then %s >/dev/null 2>&1; fi`,
		int(window.Seconds()), remote.Quote(l.CurrentContainer()), remote.Quote(container), remote.Quote(dk.Stop(container, 30)...))
}

// detach runs a script on the target in its own session, returning at once.
func detach(ctx context.Context, h *remote.Host, script string) error {
	_, err := h.Run(ctx, "sh", "-c", "setsid sh -c "+remote.Quote(script)+" >/dev/null 2>&1 </dev/null &")
	return err
}

// revert undoes a deploy that did not complete on this target, in reverse
// order, and reports (never hides) a failed undo.
func (d *Deployment) revert(ctx context.Context, tr *targetRun) error {
	tr.mu.Lock()
	done, locked := tr.completed, tr.locked
	tr.mu.Unlock()
	if done {
		return pipelines.Skip("the deploy completed")
	}
	if !locked || tr.host == nil {
		return pipelines.Skip("nothing was changed (the lock was never taken)")
	}
	var errs []error
	h, l := tr.host, tr.layout
	if tr.linked {
		if err := d.restoreSite(ctx, tr); err != nil {
			errs = append(errs, err)
		}
	}
	if tr.started {
		if _, err := h.Run(ctx, tr.docker.Remove(tr.container)...); err != nil && !strings.Contains(err.Error(), "No such container") {
			errs = append(errs, err)
		}
	}
	if tr.state != nil && (tr.state.InProgress != nil || tr.before != nil) {
		if _, err := h.Run(ctx, "rm", "-rf", "--", l.Release(d.req.ID)); err != nil {
			errs = append(errs, err)
		}
		if tr.before != nil {
			tr.state.Releases = tr.before // the history as it was before the switch
		}
		tr.state.InProgress = nil
		if err := SaveState(h, l, tr.state); err != nil {
			errs = append(errs, err)
		}
	}
	if tr.monitored && tr.previous != nil {
		if err := d.applyMonitoring(ctx, tr, tr.previous.Port, tr.previous.ID, false); err != nil {
			errs = append(errs, fmt.Errorf("pointing Prometheus back at the previous backend: %w", err))
		}
	}
	what := "removed the new release; the previous one kept serving"
	if tr.switched {
		what = "switched back to the previous release and removed the new one"
	}
	if len(errs) > 0 {
		tr.mu.Lock()
		tr.reverted = "revert incomplete: " + errors.Join(errs...).Error()
		tr.mu.Unlock()
		return fmt.Errorf("revert: %w", errors.Join(errs...))
	}
	tr.mu.Lock()
	tr.reverted = what
	tr.mu.Unlock()
	return nil
}

// restoreSite points the nginx site back at the previous release (or
// removes it on a first deploy), checks and reloads, and restores the
// `current` link and container file.
func (d *Deployment) restoreSite(ctx context.Context, tr *targetRun) error {
	h, l := tr.host, tr.layout
	if tr.previous == nil {
		if _, err := h.Run(ctx, "rm", "-f", l.SitePath); err != nil {
			return err
		}
	} else if err := h.Symlink(ctx, l.SiteConf(tr.previous.ID), l.SitePath); err != nil {
		return err
	}
	if _, err := h.Run(ctx, tr.nginx.Test()...); err != nil {
		return fmt.Errorf("nginx -t after restoring the previous site: %w", err)
	}
	if tr.switched || tr.previous == nil {
		if _, err := h.Run(ctx, tr.nginx.Reload()...); err != nil {
			return fmt.Errorf("nginx reload after restoring the previous site: %w", err)
		}
	}
	if tr.previous != nil {
		if err := h.Symlink(ctx, l.Release(tr.previous.ID), l.Current()); err != nil {
			return err
		}
		return h.WriteFile(l.CurrentContainer(), []byte(tr.previous.Container+"\n"), 0o644)
	}
	_, err := h.Run(ctx, "rm", "-f", l.Current(), l.CurrentContainer())
	return err
}

// loadState reads state.json and converges an interrupted deploy, so what
// it records as current is what serves.
func (d *Deployment) loadState(ctx context.Context, tr *targetRun) (*State, error) {
	st, err := LoadState(tr.host, tr.layout)
	if err != nil {
		return nil, err
	}
	tr.state = st
	if st.InProgress != nil {
		id := st.InProgress.ID
		if err := d.converge(ctx, tr); err != nil {
			return nil, fmt.Errorf("converging the interrupted deploy %s: %w", id, err)
		}
	}
	return st, nil
}

// converge finishes what an interrupted deploy left, so the release
// recorded as current is the one serving: the site link goes back to the
// current release, the interrupted release's container and folder go.
func (d *Deployment) converge(ctx context.Context, tr *targetRun) error {
	st, h, l := tr.state, tr.host, tr.layout
	j := st.InProgress
	if j == nil {
		return nil
	}
	d.log.Warn("converging an interrupted deploy", "target", tr.cfg.Name, "deploy", j.ID, "phase", j.Phase)
	link, err := h.Readlink(l.SitePath)
	if err != nil {
		return err
	}
	if link == l.SiteConf(j.ID) {
		cur, ok := st.Current()
		if ok {
			if err := h.Symlink(ctx, l.SiteConf(cur.ID), l.SitePath); err != nil {
				return err
			}
		} else if _, err := h.Run(ctx, "rm", "-f", l.SitePath); err != nil {
			return err
		}
		if _, err := h.Run(ctx, tr.nginx.Test()...); err != nil {
			return err
		}
		if _, err := h.Run(ctx, tr.nginx.Reload()...); err != nil {
			return err
		}
		if ok {
			if err := h.Symlink(ctx, l.Release(cur.ID), l.Current()); err != nil {
				return err
			}
			if err := h.WriteFile(l.CurrentContainer(), []byte(cur.Container+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	if j.Container != "" {
		if _, err := h.Run(ctx, tr.docker.Remove(j.Container)...); err != nil && !strings.Contains(err.Error(), "No such container") {
			return err
		}
	}
	if _, err := h.Run(ctx, "rm", "-rf", "--", l.Release(j.ID)); err != nil {
		return err
	}
	st.InProgress = nil
	return SaveState(h, l, st)
}

func (d *Deployment) unlock(ctx context.Context, tr *targetRun) error {
	tr.mu.Lock()
	locked := tr.locked
	tr.mu.Unlock()
	if !locked {
		return pipelines.Skip("the lock was never taken")
	}
	if err := ReleaseLock(ctx, tr.host, tr.layout, d.req.ID, false); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.locked = false
	tr.mu.Unlock()
	return nil
}
