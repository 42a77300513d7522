package rollout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
)

// Watch is what the watch window saw: the health endpoint polled through
// the public address after the switch.
type Watch struct {
	URL            string `json:"url"`
	Window         string `json:"window"`
	Checks         int    `json:"checks"`
	Failures       int    `json:"failures"`
	MaxConsecutive int    `json:"max_consecutive_failures"`
	Threshold      int    `json:"threshold"`
	Triggered      bool   `json:"triggered"`
	LastError      string `json:"last_error,omitempty"`
	// Crash says how the new backend exited, restarted or was killed for
	// memory during the window (a trigger by itself).
	Crash string `json:"crash,omitempty"`
	// Served is what nginx served to the new release since its switch,
	// from the release's access log: clients' requests and their 5xx
	// (lawsker-deploy's own counted apart). More errors than
	// rollback.error_rate_threshold of at least MinServed requests
	// trigger (ServedTriggered).
	Served          *deploy.RequestCounts `json:"served,omitempty"`
	ServedTriggered bool                  `json:"served_triggered,omitempty"`
	ErrorRate       float64               `json:"error_rate_threshold"`
}

// MinServed is how many client requests the watch needs before their
// error rate is a trigger: fewer say little (one 5xx in 3 is not 33%).
const MinServed = 20

// WatchOptions bound a watch.
type WatchOptions struct {
	URL       string
	Host      string // Host header ("" keeps the URL's)
	Interval  time.Duration
	Window    time.Duration
	Threshold int                 // consecutive failures that trigger
	Expect    config.HealthExpect // a healthy answer (backend.health_expect)
	// Served, polled with every check, is what nginx served to the new
	// release (nil: not watched); more 5xx than ErrorRate of at least
	// MinServed requests trigger.
	Served    func() deploy.RequestCounts
	ErrorRate float64
	TLS       *tls.Config
	ConnectTo map[string]string // verification.connect_to
	Route     *checks.Route     // hosts reached through a target (nil: direct)
	// Crashed, polled every 250 ms during the window, says how a new
	// backend exited or restarted ("" while all run steadily).
	Crashed func(ctx context.Context) string
}

// WatchOptionsFor is the watch of a configuration: the suite's base URL
// and health path, every health_gate.interval for rollback.watch_window,
// rollback.health_check_threshold failures in a row.
func WatchOptionsFor(cfg *config.Config, roots *x509.CertPool) WatchOptions {
	o := WatchOptions{URL: checks.BaseURL(cfg, "") + cfg.Backend.HealthPath, Interval: cfg.Backend.HealthGate.Interval.D(),
		Window: cfg.Rollback.WatchWindow.D(), Threshold: cfg.Rollback.HealthCheckThreshold, ConnectTo: cfg.Verification.ConnectTo, Expect: cfg.Backend.HealthExpect,
		ErrorRate: cfg.Rollback.ErrorRateThreshold}
	if roots != nil {
		o.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return o
}

// RunWatch polls the health URL until the window ends, the threshold of
// consecutive failures is reached, or ctx ends.
func RunWatch(ctx context.Context, o WatchOptions) *Watch {
	w := &Watch{URL: o.URL, Window: o.Window.String(), Threshold: o.Threshold, ErrorRate: o.ErrorRate}
	if o.Window <= 0 {
		return w
	}
	// served reads the tally; true when its error rate triggers.
	served := func() bool {
		if o.Served == nil {
			return false
		}
		c := o.Served()
		w.Served = &c
		if c.Requests >= MinServed && float64(c.Errors) > o.ErrorRate*float64(c.Requests) {
			w.Triggered, w.ServedTriggered = true, true
			w.LastError = fmt.Sprintf("nginx answered %d of %d client requests to the new release with 5xx (last: %s)", c.Errors, c.Requests, c.LastError)
			return true
		}
		return false
	}
	defer served() // the counts at the end, whatever ended the watch
	interval := max(o.Interval, 100*time.Millisecond)
	h := checks.NewHTTP(max(interval, 2*time.Second), o.TLS)
	h.Host = o.Host
	h.Connect(o.ConnectTo, o.Route)
	probe := checks.BackendHealth(h, o.URL, o.Expect)
	end := time.Now().Add(o.Window)
	var crashed <-chan string // nil: no crash watch, never ready
	if o.Crashed != nil {
		cctx, stop := context.WithDeadline(ctx, end)
		defer stop()
		crashed = deploy.WatchCrashes(cctx, o.Crashed)
	}
	crash := func(why string, ok bool) bool {
		if !ok {
			crashed = nil // the crash watch ended
			return false
		}
		w.Triggered, w.Crash, w.LastError = true, why, why
		return true
	}
	consecutive := 0
	for {
		select {
		case why, ok := <-crashed:
			if crash(why, ok) {
				return w
			}
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, max(interval, 2*time.Second))
		res, err := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return w
		}
		w.Checks++
		if served() {
			return w
		}
		if err != nil || res.Status == checks.Fail {
			w.Failures++
			consecutive++
			w.MaxConsecutive = max(w.MaxConsecutive, consecutive)
			if err != nil {
				w.LastError = err.Error()
			} else {
				w.LastError = res.Message
			}
			if o.Threshold > 0 && consecutive >= o.Threshold {
				w.Triggered = true
				return w
			}
		} else {
			consecutive = 0
		}
		if time.Now().Add(interval).After(end) {
			return w
		}
		select {
		case <-ctx.Done():
			return w
		case why, ok := <-crashed:
			if crash(why, ok) {
				return w
			}
		case <-time.After(interval):
		}
	}
}

// Classify turns a verification into a rollback trigger (nil: keep the
// release). In order: the watch's consecutive health failures, a failed
// health check, the load test's error rate, the baseline comparison, other
// performance limits of the release (not the host's resources), functional
// checks, and security checks when
// rollback.on_security_failure is set.
func Classify(s *checks.Suite, w *Watch, rb config.Rollback) *Trigger {
	if w != nil && w.Crash != "" {
		return &Trigger{Kind: TriggerCrash, Reason: w.Crash}
	}
	if w != nil && w.ServedTriggered {
		return &Trigger{Kind: TriggerErrorRate, Reason: fmt.Sprintf("%s; rollback.error_rate_threshold %g", w.LastError, w.ErrorRate)}
	}
	if w != nil && w.Triggered {
		return &Trigger{Kind: TriggerHealth, Reason: fmt.Sprintf("%d consecutive failed health checks of %s (threshold %d): %s", w.MaxConsecutive, w.URL, w.Threshold, w.LastError)}
	}
	if s == nil {
		return nil
	}
	failed := func(match func(checks.Result) bool) []string {
		var out []string
		for _, r := range s.Results {
			if r.Status == checks.Fail && match(r) {
				out = append(out, r.Name+": "+r.Message)
			}
		}
		return out
	}
	cat := func(c checks.Category) func(checks.Result) bool {
		return func(r checks.Result) bool { return r.Category == c }
	}
	errorRate := func(r checks.Result) bool {
		v, ok := r.Details["error_rate"].(float64)
		return r.Category == checks.Performance && ok && v > rb.ErrorRateThreshold
	}
	order := []struct {
		kind  string
		match func(checks.Result) bool
	}{
		{TriggerHealth, cat(checks.Health)},
		{TriggerErrorRate, errorRate},
		{TriggerPerformance, func(r checks.Result) bool { return r.Name == "baseline" }},
		// The target's CPU, memory and disk are reported, not held against
		// the release: other work on the host moves them.
		{TriggerPerformance, func(r checks.Result) bool {
			return r.Category == checks.Performance && !strings.HasPrefix(r.Name, "system resources")
		}},
		{TriggerFunctional, cat(checks.Functional)},
	}
	if rb.OnSecurityFailure {
		order = append(order, struct {
			kind  string
			match func(checks.Result) bool
		}{TriggerSecurity, cat(checks.Security)})
	}
	for _, o := range order {
		if f := failed(o.match); len(f) > 0 {
			return &Trigger{Kind: o.kind, Reason: strings.Join(f, "; ")}
		}
	}
	return nil
}
