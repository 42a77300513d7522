package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"os"
	"path"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// MaintenanceState is a target's maintenance mode, as its marker file
// (<base>/maintenance/on.json) records it.
type MaintenanceState struct {
	Target  string    `json:"target"`
	On      bool      `json:"on"`
	Since   time.Time `json:"since,omitzero"`
	Who     string    `json:"who,omitempty"`
	Message string    `json:"message,omitempty"`
	// Release is the release that serves again when it is turned off.
	Release string `json:"release,omitempty"`
}

func maintenanceDir(l Layout) string    { return path.Join(l.Base, "maintenance") }
func maintenanceMarker(l Layout) string { return path.Join(maintenanceDir(l), "on.json") }
func maintenanceSite(l Layout) string   { return path.Join(maintenanceDir(l), "nginx.conf") }
func maintenancePages(l Layout) string  { return path.Join(maintenanceDir(l), "page") }

// ReadMaintenance reads a target's maintenance mode (On false: off).
func ReadMaintenance(h *remote.Host, l Layout) (MaintenanceState, error) {
	data, err := h.ReadFile(maintenanceMarker(l))
	if errors.Is(err, os.ErrNotExist) {
		return MaintenanceState{}, nil
	}
	if err != nil {
		return MaintenanceState{}, err
	}
	var m MaintenanceState
	if err := json.Unmarshal(data, &m); err != nil {
		return MaintenanceState{}, fmt.Errorf("%s: %w", maintenanceMarker(l), err)
	}
	m.On = true
	return m, nil
}

// ErrMaintenance is wrapped when a deploy or a switch is refused because
// maintenance mode is on.
var ErrMaintenance = errors.New("maintenance mode is on")

// refuseInMaintenance fails a run on a target in maintenance mode: its
// switch would end the mode behind the back of whoever turned it on.
func refuseInMaintenance(h *remote.Host, t config.Target, l Layout) error {
	m, err := ReadMaintenance(h, l)
	if err != nil || !m.On {
		return err
	}
	return fmt.Errorf("%s: %w (since %s, by %s: %q): `lawsker-deploy maintenance off` first; nothing was changed",
		t.Name, ErrMaintenance, m.Since.Format(time.RFC3339), m.Who, m.Message)
}

// MaintenancePageHTML is the page: the configured file with {{message}}
// replaced, or a plain page saying the message (HTML-escaped either way).
func MaintenancePageHTML(cfg *config.Config, message string) ([]byte, error) {
	if message == "" {
		message = cfg.Maintenance.Message
	}
	msg := html.EscapeString(message)
	if p := cfg.Maintenance.Page; p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("maintenance.page: %w", err)
		}
		return []byte(strings.ReplaceAll(string(data), "{{message}}", msg)), nil
	}
	return []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>` + html.EscapeString(cfg.App) + ` is under maintenance</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head>
<body><h1>Under maintenance</h1><p>` + msg + `</p></body></html>
`), nil
}

// maintenanceSiteData is a target's maintenance site: 503 with
// Retry-After and the page for every request, the health path still
// proxied to the serving backend (port 0: none), ACME tokens still served,
// HTTPS kept when its certificates are installed.
func maintenanceSiteData(cfg *config.Config, t config.Target, h *remote.Host, l Layout, release string, port, retryAfter int) SiteData {
	data := SiteData{App: cfg.App, Name: l.Name, Release: release, Listen: listenOn(t.Nginx.ListenAddress, t.Nginx.Listen), ServerNames: ServerNames(cfg.Domains),
		Webroot: certs.Webroot(l.Base), Hold: true,
		Maintenance: &MaintenancePage{Dir: maintenancePages(l), RetryAfter: retryAfter, HealthPath: cfg.Backend.HealthPath}}
	if port > 0 {
		data.Upstream = fmt.Sprintf("127.0.0.1:%d", port)
	}
	if servers, ok := installedTLS(cfg, h, l); ok {
		data.TLS, data.ListenTLS = servers, listenOn(t.Nginx.ListenAddress, t.Nginx.ListenTLS)
	}
	return data
}

// writeMaintenancePage writes the page where the maintenance site finds it.
func writeMaintenancePage(cfg *config.Config, h *remote.Host, l Layout, message string) error {
	page, err := MaintenancePageHTML(cfg, message)
	if err != nil {
		return err
	}
	if err := h.MkdirAll(maintenancePages(l)); err != nil {
		return err
	}
	return h.WriteFile(path.Join(maintenancePages(l), MaintenancePageFile), page, 0o644)
}

// MaintenanceOn puts a target in maintenance mode under its deploy lock:
// the page written, the maintenance site checked (nginx -t) and switched
// to with a reload (put back when nginx refuses it), the marker written.
// A target already in maintenance mode gets the new message.
func MaintenanceOn(ctx context.Context, cfg *config.Config, t config.Target, h *remote.Host, message, who string) (MaintenanceState, error) {
	l := NewLayout(cfg, t)
	return underLock(ctx, h, l, who, "maintenance on", func() (MaintenanceState, error) {
		st, err := LoadState(h, l)
		if err != nil {
			return MaintenanceState{}, err
		}
		cur, ok := st.Current()
		if !ok {
			return MaintenanceState{}, fmt.Errorf("%s serves no release yet: there is nothing to hold", t.Name)
		}
		if message == "" {
			message = cfg.Maintenance.Message
		}
		if err := writeMaintenancePage(cfg, h, l, message); err != nil {
			return MaintenanceState{}, err
		}
		site, err := RenderSite(maintenanceSiteData(cfg, t, h, l, cur.ID+"-maintenance", cur.Port, int(cfg.Maintenance.RetryAfter.D()/time.Second)))
		if err != nil {
			return MaintenanceState{}, err
		}
		if err := h.WriteFile(maintenanceSite(l), site, 0o644); err != nil {
			return MaintenanceState{}, err
		}
		if err := pointSite(ctx, h, t, l, maintenanceSite(l), l.SiteConf(cur.ID)); err != nil {
			return MaintenanceState{}, err
		}
		if err := WaitServing(ctx, h, "http://"+nginxAddr(t.Nginx), releaseProbe, hostHeader(cfg), cur.ID+"-maintenance", 15*time.Second); err != nil {
			return MaintenanceState{}, fmt.Errorf("%s: %w", t.Name, err)
		}
		m := MaintenanceState{Target: t.Name, On: true, Since: time.Now().UTC(), Who: who, Message: message, Release: cur.ID}
		if old, err := ReadMaintenance(h, l); err == nil && old.On {
			m.Since = old.Since
		}
		data, _ := json.MarshalIndent(m, "", "  ")
		return m, h.WriteFile(maintenanceMarker(l), data, 0o644)
	})
}

// MaintenanceOff ends a target's maintenance mode: the serving release's
// site back (checked, reloaded), the marker removed.
func MaintenanceOff(ctx context.Context, cfg *config.Config, t config.Target, h *remote.Host, who string) (MaintenanceState, error) {
	l := NewLayout(cfg, t)
	return underLock(ctx, h, l, who, "maintenance off", func() (MaintenanceState, error) {
		m, err := ReadMaintenance(h, l)
		if err != nil || !m.On {
			return MaintenanceState{Target: t.Name}, err
		}
		st, err := LoadState(h, l)
		if err != nil {
			return m, err
		}
		cur, ok := st.Current()
		if !ok {
			return m, fmt.Errorf("%s: state.json names no current release to serve again", t.Name)
		}
		if err := pointSite(ctx, h, t, l, l.SiteConf(cur.ID), maintenanceSite(l)); err != nil {
			return m, err
		}
		if err := WaitServing(ctx, h, "http://"+nginxAddr(t.Nginx), releaseProbe, hostHeader(cfg), cur.ID, 15*time.Second); err != nil {
			return m, fmt.Errorf("%s: %w", t.Name, err)
		}
		if err := h.Remove(maintenanceMarker(l)); err != nil {
			return m, err
		}
		return MaintenanceState{Target: t.Name, Release: cur.ID}, nil
	})
}

// pointSite links nginx's site to conf, checks and reloads; when nginx
// refuses it the link goes back to previous.
func pointSite(ctx context.Context, h *remote.Host, t config.Target, l Layout, conf, previous string) error {
	n := NginxFor(t)
	if _, err := h.RunScript(ctx, nil, remote.SymlinkCmds(conf, l.SitePath)...); err != nil {
		return err
	}
	if _, err := h.Run(ctx, n.Test()...); err != nil {
		_, _ = h.RunScript(ctx, nil, remote.SymlinkCmds(previous, l.SitePath)...)
		return fmt.Errorf("%s: nginx -t refused the site (the previous one is back): %w", t.Name, err)
	}
	_, err := h.Run(ctx, n.Reload()...)
	return err
}

// underLock runs fn holding the target's deploy lock (a deploy running
// there refuses it, naming its holder).
func underLock(ctx context.Context, h *remote.Host, l Layout, who, what string, fn func() (MaintenanceState, error)) (MaintenanceState, error) {
	id := "maintenance_" + time.Now().UTC().Format("20060102_150405.000000")
	if err := AcquireLock(ctx, h, l, LockInfo{ID: id, Who: who, When: time.Now().UTC(), Message: what}); err != nil {
		return MaintenanceState{}, err
	}
	defer func() { _ = ReleaseLock(context.WithoutCancel(ctx), h, l, id, false) }()
	return fn()
}

// installedTLS lists the HTTPS servers when tls.enabled and every
// domain's certificate is installed on the target.
func installedTLS(cfg *config.Config, h *remote.Host, l Layout) ([]TLSServer, bool) {
	if !cfg.TLS.Enabled {
		return nil, false
	}
	var servers []TLSServer
	for _, dom := range cfg.Domains {
		c, err := certs.ReadInstalled(h, l.Base, dom)
		if err != nil || c == nil {
			return nil, false
		}
		servers = append(servers, TLSServer{Name: dom, Cert: certs.CertPath(l.Base, dom), Key: certs.KeyPath(l.Base, dom), Stapling: len(c.OCSPServer) > 0})
	}
	return servers, true
}
