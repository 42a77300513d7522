package config

import (
	"fmt"
	"strings"
)

// SecretStatus says whether a secret reference resolved (never its value).
type SecretStatus struct {
	SecretUse
	Available bool   `json:"available"`
	Problem   string `json:"problem,omitempty"`
}

// Summary is a short description of a valid configuration.
func (c *Config) Summary(secrets []SecretStatus) string {
	var b strings.Builder
	line := func(k, format string, args ...any) {
		if k != "" {
			k += ":"
		}
		fmt.Fprintf(&b, "  %-13s %s\n", k, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(&b, "%s (%s)\n", c.App, c.Environment)
	for i, t := range c.Targets {
		key := ""
		if i == 0 {
			key = "targets"
		}
		line(key, "%s  %s@%s:%d  root %s", t.Name, t.SSH.User, t.Host, t.SSH.Port, t.Root)
	}
	mig := "no migrations"
	if len(c.Backend.MigrateCommand) > 0 {
		mig = "migrations: " + strings.Join(c.Backend.MigrateCommand, " ")
	}
	port := fmt.Sprintf("port %d", c.Backend.Port)
	if c.Backend.Network == "host" {
		port = fmt.Sprintf("host network, a port from %d-%d told in %s", c.Backend.HostPortMin, c.Backend.HostPortMax, c.Backend.PortEnv)
	}
	line("backend", "%s  %s  health %s  %s", c.Backend.Image, port, c.Backend.HealthPath, mig)
	if c.Frontend != nil {
		line("frontend", "%s/%s", c.Frontend.Source, c.Frontend.Output)
	}
	for i, r := range c.RoutingTable() {
		key := ""
		if i == 0 {
			key = "routing"
		}
		line(key, "%s", r)
	}
	if c.Database != nil {
		line("database", "postgresql %s@%s:%d/%s", c.Database.User, c.Database.Host, c.Database.Port, c.Database.Name)
	}
	if c.Redis != nil {
		line("redis", "%s", c.Redis.URL)
	}
	if len(c.Domains) > 0 {
		tls := "no TLS"
		if c.TLS.Enabled {
			tls = "TLS via " + c.TLS.Challenge
		}
		line("domains", "%s (%s)", strings.Join(c.Domains, ", "), tls)
	}
	if c.Monitoring.Enabled {
		line("monitoring", "Prometheus %s, Grafana %s", c.Monitoring.PrometheusURL, c.Monitoring.GrafanaURL)
	}
	snap := "off"
	if c.Snapshots.Enabled {
		snap = fmt.Sprintf("%s, keep %d days and the last %d", c.Snapshots.Store, c.Snapshots.RetentionDays, c.Snapshots.KeepLast)
	}
	line("snapshots", "%s", snap)
	rb := "manual only"
	if c.Rollback.Auto {
		rb = fmt.Sprintf("automatic (%d failed health checks, error rate > %g, latency > %gx baseline)",
			c.Rollback.HealthCheckThreshold, c.Rollback.ErrorRateThreshold, c.Rollback.PerformanceDegradationThreshold)
	}
	line("rollback", "%s", rb)
	exec := fmt.Sprintf("parallel, up to %d steps", c.Execution.MaxWorkers)
	if !c.Execution.Parallel {
		exec = "serial"
	}
	line("execution", "%s, step timeout %s", exec, c.Execution.StepTimeout)
	for i, s := range secrets {
		key := ""
		if i == 0 {
			key = "secrets"
		}
		state := "available"
		if !s.Available {
			state = "MISSING: " + s.Problem
		}
		line(key, "%s <- %s (%s)", s.Path, s.Ref, state)
	}
	return b.String()
}

// SecretStatuses resolves every reference with r and says which are
// available. Values go only to r.OnResolve.
func (c *Config) SecretStatuses(r *Resolver) []SecretStatus {
	var out []SecretStatus
	for _, u := range c.SecretRefs() {
		s := SecretStatus{SecretUse: u, Available: true}
		if _, err := r.Resolve(u.Ref); err != nil {
			s.Available, s.Problem = false, err.Error()
		}
		out = append(out, s)
	}
	return out
}
