package rollout

import (
	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
)

// RouteThrough is how the suite and the watch reach a target that is itself
// reached through a forward (ssh.via, set by the Dagger layer from a
// service): every connection to the target's host goes through h, its SSH
// connection, and is made from the target (so http://127.0.0.1:28080 is
// the target's nginx, not the engine's loopback). nil when the target is
// dialled directly.
func RouteThrough(cfg *config.Config, h *remote.Host) *checks.Route {
	if h == nil {
		return nil
	}
	for _, t := range cfg.Targets {
		if t.Name != h.Endpoint.Name || t.SSH.Via == "" {
			continue
		}
		hosts := map[string]bool{t.Host: true}
		if deploy.IsLoopback(t.Host) {
			hosts["localhost"] = true
		}
		return &checks.Route{Hosts: hosts, Why: "target " + t.Name + " is reached through a forward (" + t.SSH.Via + "), so its ports cannot be seen from here",
			Dial: h.DialTCP}
	}
	return nil
}
