package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/remote"
)

// ApplyMonitoring renders the monitoring for the release serving on the
// first target, checks it with promtool (unless the caller checked it:
// check false) and applies it there.
func ApplyMonitoring(ctx context.Context, cfg *config.Config, res *config.Resolver, check bool) (*monitoring.Result, monitoring.Files, error) {
	h, files, err := monitoringFiles(ctx, cfg, res)
	if err != nil {
		return nil, files, err
	}
	defer h.Close()
	t := cfg.Primary()
	if check {
		if err := monitoring.Check(ctx, files); err != nil {
			return nil, files, err
		}
	}
	r, err := monitoring.Apply(ctx, cfg, res, monitoringTarget(cfg, t, h), files)
	if err != nil || !cfg.Monitoring.LogsOn() {
		return r, files, err
	}
	r.LogStores = ensureLogStores(ctx, cfg, res, h)
	return r, files, nil
}

// ensureLogStores runs the log store on every target (primary: its
// connection is h), and says what became of each.
func ensureLogStores(ctx context.Context, cfg *config.Config, res *config.Resolver, primary *remote.Host) map[string]string {
	out := map[string]string{}
	s, err := monitoring.LogStoreFor(cfg)
	for i, t := range cfg.Targets {
		if err != nil {
			out[t.Name] = err.Error()
			continue
		}
		h := primary
		if i > 0 {
			e, eerr := deploy.Endpoint(t, res)
			if eerr == nil {
				h, eerr = remote.Connect(ctx, e, 2)
			}
			if eerr != nil {
				out[t.Name] = "not reached: " + eerr.Error()
				continue
			}
			defer h.Close()
		}
		state, serr := monitoring.EnsureLogStore(ctx, monitoringTarget(cfg, t, h), s)
		if serr != nil {
			state = "not running: " + serr.Error()
		}
		out[t.Name] = state
	}
	return out
}

// MonitoringFiles renders the monitoring for the release serving on the
// first target (to check elsewhere, e.g. promtool in a container).
func MonitoringFiles(ctx context.Context, cfg *config.Config, res *config.Resolver) (monitoring.Files, error) {
	h, files, err := monitoringFiles(ctx, cfg, res)
	if h != nil {
		h.Close()
	}
	return files, err
}

func monitoringFiles(ctx context.Context, cfg *config.Config, res *config.Resolver) (*remote.Host, monitoring.Files, error) {
	if !cfg.Monitoring.Enabled {
		return nil, nil, errors.New("monitoring.enabled is false: nothing to apply")
	}
	t := cfg.Primary()
	e, err := deploy.Endpoint(t, res)
	if err != nil {
		return nil, nil, err
	}
	h, err := remote.Connect(ctx, e, 3)
	if err != nil {
		return nil, nil, &TargetError{err}
	}
	st, err := deploy.LoadState(h, deploy.NewLayout(cfg, t))
	if err != nil {
		h.Close()
		return nil, nil, &TargetError{err}
	}
	cur, ok := st.Current()
	if !ok {
		h.Close()
		return nil, nil, fmt.Errorf("%s serves no release yet: deploy first (the backend is what Prometheus scrapes)", t.Name)
	}
	files, err := RenderMonitoring(cfg, cur)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, files, nil
}

// RenderMonitoring renders the monitoring of a release.
func RenderMonitoring(cfg *config.Config, r deploy.Release) (monitoring.Files, error) {
	return monitoring.Render(cfg, monitoring.Input{Backends: []string{fmt.Sprintf("127.0.0.1:%d", r.Port)}, Release: r.ID, Name: deploy.PrimaryLayout(cfg).Name})
}

// monitoringTarget is a target as package monitoring sees it.
func monitoringTarget(cfg *config.Config, t config.Target, h *remote.Host) monitoring.Target {
	l := deploy.NewLayout(cfg, t)
	return monitoring.Target{Host: h, Base: l.Base, App: cfg.App, Name: l.Name, Docker: deploy.Docker{Host: t.Docker.Host}}
}
