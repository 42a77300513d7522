package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

func (d *Deployment) lock(ctx context.Context, tr *targetRun) error {
	if tr.host == nil {
		e, err := Endpoint(tr.cfg, d.req.Resolver)
		if err != nil {
			return err
		}
		skippable := slices.Contains(d.req.SkipUnreachable, tr.cfg.Name)
		attempts := 1
		if skippable {
			attempts = 3 // then skipped, not retried
		}
		h, err := remote.Connect(ctx, e, attempts)
		var ne *remote.NetError
		if errors.As(err, &ne) && skippable {
			tr.mu.Lock()
			tr.skipped, tr.noop = true, "unreachable, skipped (--skip-unreachable): "+err.Error()
			tr.mu.Unlock()
			d.mu.Lock()
			d.unreachable = append(d.unreachable, tr.cfg.Name+": "+err.Error())
			d.mu.Unlock()
			return pipelines.Skip("%s", tr.noop)
		}
		if errors.As(err, &ne) {
			return pipelines.Retriable(err)
		}
		if err != nil {
			return err
		}
		tr.host = h
	}
	if err := refuseInMaintenance(tr.host, tr.cfg, tr.layout); err != nil {
		return err
	}
	if err := d.acquire(ctx, tr); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.locked = true
	tr.mu.Unlock()
	return nil
}

// prepare converges an interrupted run, decides whether there is anything
// to do, then opens this run's journal (its first undo: the release folder)
// before it creates the folder, picks a port and writes the env file.
func (d *Deployment) prepare(ctx context.Context, tr *targetRun) error {
	if tr.skipped {
		return pipelines.Skip("%s", tr.noop)
	}
	h, l := tr.host, tr.layout
	st, err := d.loadState(ctx, tr)
	if err != nil {
		return err
	}
	secrets, err := d.secretsHash(ctx, tr)
	if err != nil {
		return err
	}
	tr.mu.Lock()
	tr.secrets = secrets
	tr.mu.Unlock()
	if cur, ok := st.Current(); ok {
		c := cur
		tr.mu.Lock()
		tr.previous = &c
		tr.mu.Unlock()
		same := cur.Image == d.req.Image && cur.ConfigHash == d.configHash && (d.local == nil || cur.FrontendHash == d.local.Hash)
		switch {
		case d.req.Force || !same:
		case cur.SecretsHash == secrets:
			tr.mu.Lock()
			tr.noop = fmt.Sprintf("release %s already serves %s with this frontend, configuration and secret values (--force redeploys)", cur.ID, cur.Image)
			tr.mu.Unlock()
			return pipelines.Skip("%s", tr.noop)
		case cur.SecretsHash == "" && secrets != "":
			// Recorded before secret values were hashed: they cannot be
			// compared, and the release is not redeployed for that alone.
			tr.mu.Lock()
			tr.noop = fmt.Sprintf("release %s already serves %s with this frontend and configuration; its secret values were not recorded, so they are not compared (--force redeploys with today's)", cur.ID, cur.Image)
			tr.mu.Unlock()
			return pipelines.Skip("%s", tr.noop)
		default:
			d.log.Info("a secret's value changed: redeploying the same release", "target", tr.cfg.Name, "release", cur.ID)
		}
		if tr.prevMan, err = ReadManifest(h, l.Manifest(cur.ID)); err != nil {
			return err
		}
	}
	if tr.cpus, err = countCPUs(ctx, h); err != nil {
		return err
	}
	used := map[int]bool{}
	for _, r := range st.Releases {
		if r.Status != StatusRetired {
			used[r.Port] = true
			for _, p := range r.Ports {
				used[p] = true
			}
		}
	}
	b := d.req.Config.Backend
	// Ports another target of this run picked are not taken twice: hosts
	// that share a loopback (containers of several "hosts" on one engine)
	// would otherwise pick the same free port before either binds it.
	port, extra, err := func() (int, map[string]int, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.claimed == nil {
			d.claimed = map[int]bool{}
		}
		for p := range d.claimed {
			used[p] = true
		}
		port, err := FreePort(ctx, h, b.HostPortMin, b.HostPortMax, used)
		if err != nil {
			return 0, nil, err
		}
		used[port], d.claimed[port] = true, true
		var extra map[string]int
		for _, name := range b.ExtraPorts {
			p, err := FreePort(ctx, h, b.HostPortMin, b.HostPortMax, used)
			if err != nil {
				return 0, nil, fmt.Errorf("backend.extra_ports %s: %w", name, err)
			}
			used[p], d.claimed[p] = true, true
			if extra == nil {
				extra = map[string]int{}
			}
			extra[name] = p
		}
		return port, extra, nil
	}()
	if err != nil {
		return err
	}
	tr.mu.Lock()
	tr.port, tr.ports, tr.container = port, extra, l.Container(d.req.ID)
	tr.mu.Unlock()
	env, err := d.envFile(tr)
	if err != nil {
		return err
	}
	st.InProgress = &Journal{ID: d.req.ID, Phase: "prepare", Container: tr.container, Port: port, Started: time.Now().UTC(),
		Undo: []Undo{{Kind: UndoFolder, Path: l.Release(d.req.ID)}}}
	if err := SaveState(h, l, st); err != nil {
		return err
	}
	// WriteFile creates the release folder.
	return h.WriteFile(l.EnvFile(d.req.ID), env, 0o600)
}

// loadState reads state.json and converges an interrupted run, so what it
// records as current is what serves.
func (d *Deployment) loadState(ctx context.Context, tr *targetRun) (*State, error) {
	st, err := LoadState(tr.host, tr.layout)
	if err != nil {
		return nil, err
	}
	tr.state = st
	if st.InProgress != nil {
		if err := d.converge(ctx, tr); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// converge undoes what an interrupted run left on the target: its journal
// replayed whole, in reverse, exactly as its own revert would have. A
// release that was switched to but never verified is undone too: the
// previous one (still warm) serves again.
func (d *Deployment) converge(ctx context.Context, tr *targetRun) error {
	j := tr.state.InProgress
	d.log.Warn("converging an interrupted run", "target", tr.cfg.Name, "deploy", j.ID, "phase", j.Phase, "undo", len(j.Undo))
	what := fmt.Sprintf("undid the interrupted run %s (its last change: %s)", j.ID, j.Phase)
	for _, u := range j.Undo {
		if u.Kind == UndoHistory {
			if cur, ok := tr.state.Current(); ok && cur.ID == j.ID && !cur.Verified {
				what += fmt.Sprintf("; its release %s served but was never verified", j.ID)
			}
			to := "nothing serves"
			for _, r := range u.History {
				if r.Status == StatusCurrent {
					to = "release " + r.ID + " serves again"
				}
			}
			what += "; " + to
		}
	}
	if err := d.undoEnv(tr).replay(ctx, nil); err != nil {
		return fmt.Errorf("converging the interrupted run %s: %w", j.ID, err)
	}
	if hk := d.req.Hooks.AfterConverge; hk != nil && tr == d.primary() {
		did, err := hk(ctx, tr.host)
		if err != nil {
			return fmt.Errorf("converging the interrupted run %s: %w", j.ID, err)
		}
		if did != "" {
			what += "; " + did
		}
	}
	d.log.Warn("converged", "target", tr.cfg.Name, "what", what)
	tr.mu.Lock()
	tr.converged = what
	tr.mu.Unlock()
	return nil
}

// undoEnv is how this deployment replays a journal on tr.
func (d *Deployment) undoEnv(tr *targetRun) undoEnv {
	database := d.req.Hooks.RestoreDatabase
	if database == nil {
		database = d.req.Hooks.ConvergeDatabase
	}
	return undoEnv{host: tr.host, layout: tr.layout, docker: tr.docker, nginx: tr.nginxCmds(), state: tr.state, log: d.log, database: database, unhold: d.req.Hooks.Unhold,
		siteBack: func(ctx context.Context, to *Release) { d.siteBack(ctx, tr, to) },
		monitoring: func(ctx context.Context, to Release) error {
			return d.applyMonitoring(ctx, tr, to.Port, to.ID, false)
		}}
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
	inside := tr.port // {port}: what the app listens on
	if b.Network != "host" {
		inside = b.Port
	}
	for k, v := range b.Env {
		vars[k] = config.ExpandPorts(v, inside, tr.ports)
	}
	secrets, err := secretValues(d.req.Config, d.req.Resolver)
	if err != nil {
		return nil, err
	}
	for k := range b.SecretEnv {
		vars[k] = secrets["backend.secret_env."+k]
	}
	if db := d.req.Config.Database; db != nil {
		size, overflow := PoolSize(tr.cpus)
		vars[db.PoolSizeEnv], vars[db.MaxOverflowEnv] = strconv.Itoa(size), strconv.Itoa(overflow)
		vars[db.URLEnv] = pgconfig.URL(*db, secrets["database.password"])
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
	// A digest names its content: when the host has it, there is nothing
	// to pull (no registry round trip, and no shell session).
	if (engine{tr.host, tr.docker}).hasImage(ctx, d.req.Image) == nil {
		return nil
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
	have := remote.Quote(tr.docker.cmd("image", "inspect", "--format", "{{.Id}}", d.req.Image)...)
	if _, err := tr.host.Run(ctx, "sh", "-c", have+" >/dev/null 2>&1 || "+remote.Quote(tr.docker.Pull(d.req.Image)...)); err != nil {
		return fmt.Errorf("pulling the backend image (is %s in the registry?): %w", d.req.Image, err)
	}
	return nil
}
