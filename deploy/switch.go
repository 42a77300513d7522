package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/config"
	monitoringpkg "github.com/lawsker/lawsker-deploy/monitoring"
)

func (d *Deployment) upload(ctx context.Context, tr *targetRun) error {
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

// releaseProbe is a path every release's HTTP site answers itself: a file
// its ACME webroot does not have (404, with the X-Lawsker-Release header).
const releaseProbe = "/.well-known/acme-challenge/lawsker-release-probe"

// Exit codes of the switch script, so each failure says what it means.
const (
	exitSiteLink    = 70
	exitNginxTest   = 71
	exitNginxReload = 72
)

// switchOver points nginx at the new release. Before the site link moves,
// the dead man's switch runs on the target (lease.go) and the journal
// records how to put the previous site back; the link, nginx -t, the reload
// and the `current` link are then one session.
func (d *Deployment) switchOver(ctx context.Context, tr *targetRun) error {
	h, l := tr.host, tr.layout
	leased := make(chan error, 1)
	go func() {
		// Dying before the release is verified puts back what served
		// before the switch: the previous release, or the hold (whose
		// database the previous release was not deployed with).
		restore := siteCmds(l, tr.nginx, tr.previous)
		if d.holding() {
			restore = holdSiteCmds(l, tr.nginx, d.req.ID)
		}
		ls, err := startLease(ctx, h, restore)
		tr.mu.Lock()
		tr.lease = ls
		tr.mu.Unlock()
		leased <- err
	}()
	found := make(chan struct{})
	go func() { tr.nginxPidFile(ctx); close(found) }() // for the drain after the reload
	err := d.writeSite(tr)
	if lerr := <-leased; err == nil {
		err = lerr
	}
	<-found
	if err != nil {
		return err
	}
	if err := tr.record(StepSwitch, Undo{Kind: UndoSite, To: tr.previous}); err != nil {
		return err
	}
	if _, err := h.Run(ctx, "sh", "-c", switchScript(l, tr.nginxCmds(), Release{ID: d.req.ID, Container: tr.container}, "")); err != nil {
		return switchError(err)
	}
	// The switch is confirmed by nginx alone (the release's own ACME
	// location answers the probe with its release header), so it spends
	// none of the new backend's requests; the verify step checks the
	// backend through nginx next.
	if err := d.confirmServing(ctx, tr, "http://"+nginxAddr(tr.cfg.Nginx), releaseProbe, d.req.ID); err != nil {
		return err
	}
	d.holdEnded(tr)
	return d.recordCurrent(tr)
}

// confirmServing waits until nginx answers as release id (three answers
// in a row on fresh connections), then until the master's workers from
// before the reload have taken it (2 s at most; they finish what they
// still serve, as the release before): what follows sees only release id.
func (d *Deployment) confirmServing(ctx context.Context, tr *targetRun, base, path, id string) error {
	if err := WaitServing(ctx, tr.host, base, path, hostHeader(d.req.Config), id, 15*time.Second); err != nil {
		return err
	}
	tr.nginxPidFile(ctx)
	if _, err := tr.host.Run(ctx, tr.nginxCmds().Drain()...); err != nil {
		d.log.Warn("nginx workers from before the reload still run after 2s; going on", "target", tr.cfg.Name, "error", err)
	}
	return nil
}

// nginxPidFile is where the target's nginx master writes its pid (found
// once per run; "" when it cannot be known).
func (tr *targetRun) nginxPidFile(ctx context.Context) string {
	tr.pidOnce.Do(func() {
		if out, err := tr.host.Run(ctx, tr.nginx.PidFile()...); err == nil {
			tr.mu.Lock()
			tr.pidFile = strings.TrimSpace(out)
			tr.mu.Unlock()
		}
	})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.pidFile
}

// nginxCmds is the target's nginx with its pid file once nginxPidFile
// found it: its reloads then write down the workers confirmServing's
// drain waits for.
func (tr *targetRun) nginxCmds() Nginx {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.nginx.withPidFile(tr.pidFile)
}

// recordCurrent makes the new release current, not yet verified, in
// state.json: the old current becomes previous (kept warm), an older
// previous is retired. The history as it was is the undo, saved with it.
func (d *Deployment) recordCurrent(tr *targetRun) error {
	st := tr.state
	history := append([]Release(nil), st.Releases...)
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
	st.Releases = append(st.Releases, Release{ID: d.req.ID, Image: d.req.Image, FrontendHash: fh, ConfigHash: d.configHash, SecretsHash: tr.secrets,
		Container: tr.container, Port: tr.port, Ports: tr.ports, Who: d.req.Who, When: time.Now().UTC(), Message: d.req.Message, Status: StatusCurrent, Schema: d.releaseSchema()})
	return tr.record("switched", Undo{Kind: UndoHistory, History: history})
}

// watchLogFor bounds how long a release's own access log is written: the
// verification suite and the watch window, with room for the steps
// between the switch and them.
func watchLogFor(cfg *config.Config) time.Duration {
	return cfg.Verification.Deadline.D() + cfg.Rollback.WatchWindow.D() + 10*time.Minute
}

// siteData is the new release's site on a target: HTTPS servers when every
// domain's certificate is installed there (tls.enabled), else HTTP with the
// ACME webroot.
func (d *Deployment) siteData(tr *targetRun) (SiteData, bool) {
	cfg, l := d.req.Config, tr.layout
	data := SiteData{App: cfg.App, Name: l.Name, Release: d.req.ID, Listen: listenOn(tr.cfg.Nginx.ListenAddress, tr.cfg.Nginx.Listen), ServerNames: ServerNames(cfg.Domains),
		Upstream: fmt.Sprintf("127.0.0.1:%d", tr.port), Webroot: certs.Webroot(l.Base),
		WatchLog: l.AccessLog(d.req.ID), WatchUntil: time.Now().Add(watchLogFor(cfg)).Unix()}
	if a := tr.cfg.Nginx.AccessLog; a != "off" {
		data.HostLog = a
	}
	if cfg.Monitoring.LogsOn() {
		data.Syslog = fmt.Sprintf("127.0.0.1:%d", cfg.Monitoring.Logs.SyslogPort)
		data.AccessTag, data.ErrorTag = monitoringpkg.AccessTag(l.Name), monitoringpkg.ErrorTag(l.Name)
	}
	// The release that serves now stays warm behind the new one for
	// clients, unless this run changes what both depend on (a database
	// swapped under a hold: the previous code must not serve on it).
	if tr.previous != nil && tr.previous.Port > 0 && d.req.Hooks.Hold == nil {
		data.Fallback = fmt.Sprintf("127.0.0.1:%d", tr.previous.Port)
	}
	data.Canary = d.canarySite(tr)
	if d.local != nil {
		data.Frontend, data.Routes = l.Frontend(d.req.ID), cfg.Routes()
	}
	servers, ok := installedTLS(cfg, tr.host, l)
	if !ok {
		return data, false // not yet: the certificates step issues them, then renders TLS
	}
	data.TLS = servers
	data.ListenTLS = listenOn(tr.cfg.Nginx.ListenAddress, tr.cfg.Nginx.ListenTLS)
	return data, true
}

// listenOn is an nginx listen parameter: the port, on an address when set.
func listenOn(address string, port int) string {
	if address == "" {
		return strconv.Itoa(port)
	}
	return net.JoinHostPort(address, strconv.Itoa(port))
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

func (d *Deployment) verify(ctx context.Context, tr *targetRun) error {
	g := d.req.Config.Backend.HealthGate
	g.ConsecutivePasses = 1
	g.Deadline = config.Duration(20 * time.Second)
	base := "http://" + nginxAddr(tr.cfg.Nginx)
	if tr.tlsOn {
		base = "https://" + nginxTLSAddr(tr.cfg.Nginx)
	}
	if err := healthThrough(ctx, tr.host, base, d.req.Config.Backend, hostHeader(d.req.Config), g); err != nil {
		return fmt.Errorf("through nginx: %w", err)
	}
	return nil
}

// certificates issues or renews every domain's certificate (tls.enabled)
// on all targets, then turns HTTPS on where the site still lacks it
// (nginx -t, reload). A domain left without a valid certificate fails the
// step, so the deploy is reverted; a failed renewal of a still-valid
// certificate is reported and the serving one stays.
func (d *Deployment) certificates(ctx context.Context) error {
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
		tr.nginxPidFile(ctx)
		if _, err := tr.host.Run(ctx, tr.nginxCmds().Reload()...); err != nil {
			return fmt.Errorf("%s: nginx reload: %w", tr.cfg.Name, err)
		}
		if err := d.confirmServing(ctx, tr, "https://"+nginxTLSAddr(tr.cfg.Nginx), d.req.Config.Backend.HealthPath, d.req.ID); err != nil {
			return fmt.Errorf("%s: HTTPS: %w", tr.cfg.Name, err)
		}
	}
	return nil
}

// monitoring points Prometheus at the new backend: render, promtool, apply
// on the primary target; the journal records first how to point it back
// at the previous backend.
func (d *Deployment) monitoring(ctx context.Context, tr *targetRun) error {
	if tr.noop != "" {
		return nil
	}
	if err := tr.record(StepMonitoring, Undo{Kind: UndoMonitoring, To: tr.previous}); err != nil {
		return err
	}
	return d.applyMonitoring(ctx, tr, tr.port, d.req.ID, true)
}

func (d *Deployment) applyMonitoring(ctx context.Context, tr *targetRun, port int, release string, check bool) error {
	files, err := monitoringpkg.Render(d.req.Config, monitoringpkg.Input{Backends: []string{fmt.Sprintf("127.0.0.1:%d", port)}, Release: release, Name: tr.layout.Name})
	if err != nil {
		return err
	}
	if check {
		if err := monitoringpkg.Check(ctx, files); err != nil {
			return err
		}
	}
	res, err := monitoringpkg.Apply(ctx, d.req.Config, d.req.Resolver, d.monitoringTarget(tr), files)
	if err != nil {
		return err
	}
	d.log.Info("monitoring applied", "release", release, "prometheus", res.Prometheus, "grafana", res.Grafana)
	return nil
}
