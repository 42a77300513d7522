package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Maintenance actions.
const (
	MaintenanceOn     = "on"
	MaintenanceOff    = "off"
	MaintenanceStatus = "status"
)

// MaintenanceRequest is the `maintenance` verb of both front doors.
type MaintenanceRequest struct {
	Config   *config.Config
	Resolver *config.Resolver
	Action   string // on, off, status
	Message  string // with on: the page's text (default maintenance.message)
	Who      string
}

// Maintenance turns maintenance mode on or off on every web target, or
// reads it. Turning it on is all or nothing: when a target fails, the
// targets this call put in maintenance mode are taken out again.
func Maintenance(ctx context.Context, req MaintenanceRequest) ([]deploy.MaintenanceState, error) {
	switch req.Action {
	case MaintenanceOn, MaintenanceOff, MaintenanceStatus:
	default:
		return nil, fmt.Errorf("maintenance %q: use on [--message M], off or status", req.Action)
	}
	if req.Action != MaintenanceOn && req.Message != "" {
		return nil, errors.New("maintenance: --message goes with on")
	}
	cfg := req.Config
	var hosts []*remote.Host
	var targets []config.Target
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	for _, t := range cfg.Targets {
		if !t.HasRole("web") {
			continue // no nginx there
		}
		e, err := deploy.Endpoint(t, req.Resolver)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		h, err := remote.Connect(ctx, e, 2)
		if err != nil {
			return nil, &TargetError{fmt.Errorf("%s: %w (nothing was changed)", t.Name, err)}
		}
		hosts, targets = append(hosts, h), append(targets, t)
	}
	var out []deploy.MaintenanceState
	for i, t := range targets {
		var m deploy.MaintenanceState
		var err error
		switch req.Action {
		case MaintenanceStatus:
			m, err = deploy.ReadMaintenance(hosts[i], deploy.NewLayout(cfg, t))
			m.Target = t.Name
		case MaintenanceOn:
			m, err = deploy.MaintenanceOn(ctx, cfg, t, hosts[i], req.Message, req.Who)
			if err != nil {
				for j := range i { // all or nothing
					_, _ = deploy.MaintenanceOff(context.WithoutCancel(ctx), cfg, targets[j], hosts[j], req.Who)
				}
				return nil, fmt.Errorf("%s: maintenance on failed, the targets before it are back in service: %w", t.Name, err)
			}
		case MaintenanceOff:
			m, err = deploy.MaintenanceOff(ctx, cfg, t, hosts[i], req.Who)
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", t.Name, err)
		}
		out = append(out, m)
	}
	return out, nil
}
