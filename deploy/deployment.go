package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
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
	// NoMigrate leaves backend.migrate_command out: a rollback that
	// restores the database brings the schema its release ran on.
	NoMigrate bool
	Force     bool // deploy even when the same release already serves
	// LockWait waits that long for a held lock, in the target's queue
	// (0: a held lock fails the deploy at once); Supersede replaces every
	// older deploy of the app waiting there.
	LockWait  time.Duration
	Supersede bool
	// Waiting is told, as it changes, who holds the lock a deploy waits
	// for (--lock-wait): the front door shows it (nil: the log only).
	Waiting func(string)
	// SkipUnreachable names targets the deploy goes on without when they
	// cannot be reached (never the first: it migrates and snapshots).
	SkipUnreachable []string
	// NoCanary switches every client at once whatever rollout.canary says
	// (rollbacks: the release going back is known).
	NoCanary bool
	// CanaryHold ends the run after the canary's analysis with both
	// releases serving: promote or abort finish it.
	CanaryHold bool
	Logger     *slog.Logger
	Hooks      Hooks
	// ACMEClient reaches the ACME server (nil: system roots and
	// tls.acme_ca_bundle).
	ACMEClient *http.Client
}

// Hooks put work of other packages (snapshots, the verification suite)
// into the deploy graph, under the lock. Each nil hook is not run.
type Hooks struct {
	// BeforeChange runs once the primary target is locked and converged,
	// before anything changes (migrations, the new backend); current is the
	// serving release (nil before a first deploy). It returns the id of
	// the snapshot it took ("" none), which the migration step records as
	// the database's undo. An error stops the deploy with nothing changed.
	BeforeChange func(ctx context.Context, h *remote.Host, current *Release) (string, error)
	// Verify runs once every target serves the new release and answered
	// its health check through nginx. An error reverts every target: the
	// previous release serves again and the new one is removed.
	Verify func(ctx context.Context, h *remote.Host) error
	// AfterKeep runs once the release is kept on every target, still under
	// the lock. Its error fails the run; the release stays.
	AfterKeep func(ctx context.Context, h *remote.Host, current *Release) error
	// RestoreDatabase runs when the release's migrations ran and the run
	// is undone (after every target serves its previous release again, or
	// in the next run's converge): it restores the database from snapshot
	// ("" when none was taken) when its schema changed.
	RestoreDatabase func(ctx context.Context, h *remote.Host, snapshot string) error
	// ConvergeDatabase is RestoreDatabase for converging an interrupted
	// run only, in graphs without a restore-database step of their own (a
	// rollback to a snapshot); RestoreDatabase, when set, serves both.
	ConvergeDatabase func(ctx context.Context, h *remote.Host, snapshot string) error
	// BeforeSwitchBack runs on each target, under the lock, before a switch
	// back to the warm previous release to changes anything; its error
	// refuses the switch (the schema check of rollback --previous).
	BeforeSwitchBack func(ctx context.Context, h *remote.Host, to Release) error
	// AfterConverge runs on the primary target after an interrupted run
	// was converged (abandoned restore copies are dropped); what it did is
	// reported.
	AfterConverge func(ctx context.Context, h *remote.Host) (string, error)
	// Hold, when set, makes the run's change to what both releases depend
	// on under a maintenance hold (hold.go), between the serving release
	// and the start of the new backend.
	Hold *Hold
	// Unhold puts a Hold's change back from its journaled token, when the
	// run (or an interrupted one, converged) is undone before its release
	// was kept.
	Unhold func(ctx context.Context, h *remote.Host, token string) error
	// StageDatabaseUndo, with RestoreDatabase, makes the undo of a failed
	// run ready before its reverts (swap-database): it decides as
	// RestoreDatabase does (a pipelines.Skip: unchanged) and restores the
	// snapshot into a copy; swap puts it in place, abandon drops a copy
	// not swapped in.
	StageDatabaseUndo func(ctx context.Context, h *remote.Host, snapshot string) (swap func(context.Context) error, abandon func(), err error)
}

// Deployment is a prepared deploy: its DAG and, after the run, what
// happened on each target.
type Deployment struct {
	req        Request
	local      *Manifest
	configHash string
	targets    []*targetRun
	migrated   bool // the migrations or a new backend started (even when they failed): the schema may have changed
	snapshot   string
	schema     *dbschema.Schema // the new release's (recordSchema)
	mu         sync.Mutex
	tlsResults []certs.Result
	graph      *pipelines.Graph
	// The hold (hold.go): from its start, to the last target's switch.
	holdFrom, holdTo time.Time
	holdLeft         map[*targetRun]bool
	earlyRestore     bool         // swap-database restored (or found the schema unchanged) before the reverts
	storeDown        []string     // targets whose log store could not run, and why
	unreachable      []string     // targets skipped (--skip-unreachable), and why
	claimed          map[int]bool // ports picked by this run's targets
	canaryOver       bool         // the canary's verdict is in: sites render without the split
	canaryResult     *CanaryResult
	held             bool // the run ended holding its canary (--canary-hold)
	log              *slog.Logger
}

// targetRun is the state of the deploy on one target. Steps of one target
// run one after another (their needs chain), so fields are written by one
// step at a time; mu guards the few read across targets. What the run
// changed on the host is not here: it is the journal in state.
type targetRun struct {
	mu        sync.Mutex
	cfg       config.Target
	layout    Layout
	docker    Docker
	nginx     Nginx // without its pid file: nginxCmds has it
	host      *remote.Host
	state     *State
	locked    bool
	previous  *Release // serving before this deploy
	prevMan   *Manifest
	port      int
	ports     map[string]int // backend.extra_ports
	pidOnce   sync.Once
	pidFile   string // nginx's (nginxPidFile)
	secrets   string // this run's SecretsHash on the target
	container string
	cpus      int
	noop      string // why nothing is to be done, when set
	tlsOn     bool   // the new release's site serves HTTPS
	completed bool
	revert    RevertKind
	revertErr string
	converged string // what converging an interrupted run did
	lease     *lease
	stats     UploadStats
	release   string // the release now serving when it is not the request's (switch back)
	skipped   bool   // unreachable and named by --skip-unreachable
	image     string
}

func newTargetRun(cfg *config.Config, t config.Target) *targetRun {
	tr := &targetRun{cfg: t, layout: NewLayout(cfg, t), docker: Docker{Host: t.Docker.Host}, nginx: NginxFor(t)}
	tr.nginx.mark = path.Join(tr.layout.Base, ".nginx-workers-before-reload")
	return tr
}

func newDeployment(req Request) *Deployment {
	d := &Deployment{req: req, log: req.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for _, t := range req.Config.Targets {
		d.targets = append(d.targets, newTargetRun(req.Config, t))
	}
	return d
}

// primary is the target that runs the once-per-deploy work: migrations,
// snapshots, the database restore, monitoring, the verification suite.
func (d *Deployment) primary() *targetRun { return d.targets[0] }

// RevertKind is what undoing a deploy did on a target.
type RevertKind string

// Revert kinds.
const (
	RevertNone RevertKind = ""
	// RevertRemoved: the new release never served; the previous one kept
	// serving, and the new one was removed.
	RevertRemoved RevertKind = "removed"
	// RevertSwitchedBack: nginx serves the previous release again (nothing,
	// on a first deploy) and the new one was removed.
	RevertSwitchedBack RevertKind = "switched_back"
	// RevertIncomplete: an undo failed; the journal keeps the rest for the
	// next run's converge.
	RevertIncomplete RevertKind = "incomplete"
)

// TargetOutcome is what a deploy did on one target.
type TargetOutcome struct {
	Target   string `json:"target"`
	Release  string `json:"release"`
	Previous string `json:"previous,omitempty"`
	Image    string `json:"image"`
	Port     int    `json:"port,omitempty"`
	// Ports are the release's backend.extra_ports.
	Ports    map[string]int `json:"ports,omitempty"`
	NoOp     string         `json:"no_op,omitempty"`
	Frontend UploadStats    `json:"frontend"`
	Revert   RevertKind     `json:"revert,omitempty"`
	// Reverted says Revert for people.
	Reverted string `json:"reverted,omitempty"`
	// Converged says what undoing an interrupted earlier run did.
	Converged string `json:"converged,omitempty"`
}

func (o TargetOutcome) revertText(err string) string {
	switch o.Revert {
	case RevertRemoved:
		return "removed the new release; the previous one kept serving"
	case RevertSwitchedBack:
		if o.Previous == "" {
			return "took the new release down and removed it; it was the first, so nothing serves"
		}
		return "switched back to the previous release and removed the new one"
	case RevertIncomplete:
		return "revert incomplete (the next run converges the rest): " + err
	}
	return ""
}

// Outcomes reports each target after the run.
func (d *Deployment) Outcomes() []TargetOutcome {
	var out []TargetOutcome
	for _, tr := range d.targets {
		tr.mu.Lock()
		o := TargetOutcome{Target: tr.cfg.Name, Release: d.req.ID, Image: d.req.Image, Port: tr.port, Ports: tr.ports, NoOp: tr.noop, Frontend: tr.stats,
			Revert: tr.revert, Converged: tr.converged}
		if tr.release != "" {
			o.Release, o.Image = tr.release, tr.image
		}
		if tr.previous != nil {
			o.Previous = tr.previous.ID
		}
		o.Reverted = o.revertText(tr.revertErr)
		tr.mu.Unlock()
		out = append(out, o)
	}
	return out
}

// Graph is the DAG to run.
func (d *Deployment) Graph() *pipelines.Graph { return d.graph }

// Close ends the SSH connections. A dead man's switch still open (a run
// whose revert could not finish) then fires: the target puts the previous
// release's site back by itself, and the journal keeps the rest.
func (d *Deployment) Close() {
	for _, tr := range d.targets {
		if tr.host != nil {
			tr.host.Close()
		}
	}
}

// Prepare checks the request and builds the DAG; nothing on any target is
// touched until the graph runs.
func Prepare(req Request) (*Deployment, error) {
	cfg := req.Config
	if err := CheckImage(cfg, req.Image); err != nil {
		return nil, err
	}
	if cfg.Snapshots.Enabled && !req.NoSnapshot && (req.Hooks.BeforeChange == nil || req.Hooks.AfterKeep == nil) {
		return nil, errors.New("snapshots.enabled: this deploy has no pre- and post-deploy snapshot steps; deploy through the rollout package, or pass --no-snapshot")
	}
	d := newDeployment(req)
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
		if err := CheckShadowed(cfg, m); err != nil {
			return nil, err
		}
		d.local = m
	}
	if err := checkBeforeLock(req); err != nil {
		return nil, err
	}
	for _, name := range req.SkipUnreachable {
		found := false
		for i, t := range cfg.Targets {
			if t.Name == name {
				found = true
				if i == 0 {
					return nil, fmt.Errorf("--skip-unreachable %s: the first target runs the migrations, snapshots and monitoring; it cannot be skipped", name)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("--skip-unreachable %s: no such target (the targets are %s)", name, targetList(cfg))
		}
	}
	d.configHash = configHash(cfg)
	g, err := pipelines.New(d.steps()...)
	if err != nil {
		return nil, fmt.Errorf("deploy plan: %w", err)
	}
	d.graph = g
	return d, nil
}

// configHash identifies what of the configuration shapes a release (secret
// references; their values are the keyed SecretsHash's).
func configHash(cfg *config.Config) string {
	var ngs []config.Nginx
	for _, t := range cfg.Targets {
		ngs = append(ngs, t.Nginx)
	}
	data, _ := json.Marshal(struct {
		B config.Backend
		F *config.Frontend
		D *config.Database
		N []config.Nginx
		X []string
	}{cfg.Backend, cfg.Frontend, cfg.Database, ngs, cfg.Domains})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

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

// Migrated reports whether the migration step ran (even when it failed).
func (d *Deployment) Migrated() bool { return d.schemaTouched() }

// TLSResults are what the certificates step did (nil without TLS).
func (d *Deployment) TLSResults() []certs.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tlsResults
}

// Endpoint is how to reach a target, with its SSH key resolved (an empty
// ssh.key means the SSH agent).
func Endpoint(t config.Target, res *config.Resolver) (remote.Endpoint, error) {
	e := remote.Endpoint{Name: t.Name, Host: t.Host, Port: t.SSH.Port, User: t.SSH.User, KnownHosts: t.SSH.KnownHosts,
		TrustOnFirstUse: t.SSH.TrustOnFirstUse, ConnectTimeout: t.SSH.ConnectTimeout.D(), Via: t.SSH.Via}
	if !t.SSH.Key.IsZero() {
		key, err := res.Resolve(t.SSH.Key)
		if err != nil {
			return e, fmt.Errorf("ssh.key: %w", err)
		}
		e.PrivateKey = []byte(key)
	}
	return e, nil
}

func targetList(cfg *config.Config) string {
	names := make([]string, len(cfg.Targets))
	for i, t := range cfg.Targets {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}
