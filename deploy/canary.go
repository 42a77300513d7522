package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
)

// StepCanary is the canary's analysis (rollout.canary).
const StepCanary = "canary"

// Canary verdicts.
const (
	CanaryPromote = "promote"
	CanaryAbort   = "abort"
	CanaryWait    = "wait" // too few requests to judge
)

// CanaryFigures are one release's figures during a canary, from nginx's
// canary log (clients' requests only).
type CanaryFigures struct {
	Release   string  `json:"release"`
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"` // 5xx answers
	ErrorRate float64 `json:"error_rate"`
	P95MS     float64 `json:"p95_ms"`
}

func (f CanaryFigures) String() string {
	return fmt.Sprintf("%s: %d requests, %.2f%% errors, p95 %.1f ms", f.Release, f.Requests, 100*f.ErrorRate, f.P95MS)
}

// CanaryResult is the canary's verdict with both releases' figures.
type CanaryResult struct {
	Verdict  string        `json:"verdict"` // promote, abort
	Reason   string        `json:"reason"`
	Weight   int           `json:"weight_percent"`
	Measured float64       `json:"measured_percent"` // the new release's share of the clients' requests
	New      CanaryFigures `json:"new"`
	Old      CanaryFigures `json:"serving"`
	Elapsed  string        `json:"elapsed"`
}

func (r CanaryResult) String() string {
	return fmt.Sprintf("%s after %s (%s): %d%% asked, %.1f%% measured; new %s; serving %s", verbed(r.Verdict), r.Elapsed, r.Reason, r.Weight, r.Measured, r.New, r.Old)
}

func verbed(v string) string {
	switch v {
	case CanaryPromote:
		return "promoted"
	case CanaryAbort:
		return "aborted"
	}
	return v
}

// canaryLog is a release's canary log on a target.
func canaryLog(l Layout, id string) string { return path.Join(l.Release(id), "canary.log") }

// canaryCookie names the sticky cookie of a deployment.
func canaryCookie(l Layout) string { return "lawsker_" + l.Name }

// canarySite is the split of a target's site while the canary runs (nil:
// no canary: none configured, a first deploy, a run that holds, or the
// canary is over).
func (d *Deployment) canarySite(tr *targetRun) *CanarySite {
	c := d.req.Config.Rollout.Canary
	if c == nil || d.req.NoCanary || d.req.Hooks.Hold != nil || tr.previous == nil || tr.previous.Port == 0 {
		return nil
	}
	d.mu.Lock()
	over := d.canaryOver
	d.mu.Unlock()
	if over {
		return nil
	}
	return &CanarySite{Weight: c.Weight, Sticky: c.Sticky, Cookie: canaryCookie(tr.layout), Previous: fmt.Sprintf("127.0.0.1:%d", tr.previous.Port),
		PreviousRelease: tr.previous.ID, Log: canaryLog(tr.layout, d.req.ID)}
}

// ParseCanaryLog reads a canary log ($msec variant $status $request_time
// per line) into the new and the old release's figures.
func ParseCanaryLog(data []byte, newID, oldID string) (CanaryFigures, CanaryFigures) {
	var lat [2][]float64
	var figs [2]CanaryFigures
	figs[0].Release, figs[1].Release = newID, oldID
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 {
			continue
		}
		i := 1
		if f[1] == "new" {
			i = 0
		}
		status, err1 := strconv.Atoi(f[2])
		secs, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		figs[i].Requests++
		if status >= 500 {
			figs[i].Errors++
		}
		lat[i] = append(lat[i], secs*1000)
	}
	for i := range figs {
		if figs[i].Requests > 0 {
			figs[i].ErrorRate = float64(figs[i].Errors) / float64(figs[i].Requests)
			sort.Float64s(lat[i])
			figs[i].P95MS = lat[i][int(math.Ceil(0.95*float64(len(lat[i]))))-1]
		}
	}
	return figs[0], figs[1]
}

// latencySlack is what the canary's p95 may exceed the ratio by: a
// millisecond backend is not judged on noise.
const latencySlack = 50.0

// JudgeCanary decides from both releases' figures: too few requests is
// wait, never pass; an error rate or a p95 over its limit is abort.
func JudgeCanary(c config.Canary, newF, oldF CanaryFigures) (string, string) {
	if newF.Requests < c.MinRequests {
		return CanaryWait, fmt.Sprintf("%d of the %d requests needed (min_requests)", newF.Requests, c.MinRequests)
	}
	if newF.ErrorRate > c.MaxErrorRate {
		return CanaryAbort, fmt.Sprintf("error rate %.2f%% over the limit %.2f%% (max_error_rate)", 100*newF.ErrorRate, 100*c.MaxErrorRate)
	}
	if oldF.Requests > 0 && newF.P95MS > c.MaxLatencyRatio*oldF.P95MS+latencySlack {
		return CanaryAbort, fmt.Sprintf("p95 %.1f ms over %.1fx the serving release's %.1f ms +%.0f ms (max_latency_ratio)", newF.P95MS, c.MaxLatencyRatio, oldF.P95MS, latencySlack)
	}
	return CanaryPromote, fmt.Sprintf("error rate %.2f%% (limit %.2f%%), p95 %.1f ms against %.1f ms (limit %.1fx +%.0f ms)",
		100*newF.ErrorRate, 100*c.MaxErrorRate, newF.P95MS, oldF.P95MS, c.MaxLatencyRatio, latencySlack)
}

// ErrCanaryAborted is wrapped when the analysis aborts the canary.
var ErrCanaryAborted = errors.New("canary aborted")

// canary runs the analysis: both releases serve for rollout.canary.duration
// (their figures read from every target's canary log every 2 s); an error
// rate over its limit with enough requests aborts at once; at the end the
// verdict promotes (every site then serves the new release alone), aborts
// (the run fails and puts every target back), or waits for more requests,
// up to three times the duration, then aborts as inconclusive.
func (d *Deployment) canary(ctx context.Context) error {
	c := d.req.Config.Rollout.Canary
	var targets []*targetRun
	for _, tr := range d.targets {
		if tr.noop == "" && tr.cfg.HasRole("web") && d.canarySite(tr) != nil {
			targets = append(targets, tr)
		}
	}
	if len(targets) == 0 {
		return pipelines.Skip("no target serves a previous release to compare with (a first deploy): the release serves alone")
	}
	start := time.Now()
	end, last := start.Add(c.Duration.D()), start.Add(3*c.Duration.D())
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(2*time.Second, max(time.Until(end), 100*time.Millisecond))):
		}
		var logs [][]byte
		for _, tr := range targets {
			data, err := tr.host.ReadFile(canaryLog(tr.layout, d.req.ID))
			if err != nil {
				data = nil // no request yet
			}
			logs = append(logs, data)
		}
		newF, oldF := ParseCanaryLog(bytes.Join(logs, nil), d.req.ID, targets[0].previous.ID)
		verdict, reason := JudgeCanary(*c, newF, oldF)
		now := time.Now()
		res := CanaryResult{Verdict: verdict, Reason: reason, Weight: c.Weight, New: newF, Old: oldF, Elapsed: now.Sub(start).Round(time.Second).String()}
		if total := newF.Requests + oldF.Requests; total > 0 {
			res.Measured = 100 * float64(newF.Requests) / float64(total)
		}
		switch {
		case verdict == CanaryAbort:
			d.setCanary(res)
			return fmt.Errorf("%w: %s", ErrCanaryAborted, res)
		case now.Before(end):
			continue
		case verdict == CanaryWait && now.Before(last):
			d.log.Info("canary: too few requests to judge; waiting", "why", reason)
			continue
		case verdict == CanaryWait:
			res.Verdict, res.Reason = CanaryAbort, "inconclusive after 3x rollout.canary.duration: "+reason
			d.setCanary(res)
			return fmt.Errorf("%w: %s", ErrCanaryAborted, res)
		}
		if d.req.CanaryHold {
			res.Verdict = CanaryHeld
			d.setCanary(res)
			return d.holdCanary(ctx, targets, res)
		}
		d.setCanary(res)
		d.log.Info("canary promoted", "result", res.String())
		return d.promote(ctx, targets)
	}
}

// CanaryHeld is the verdict of a canary held by deploy --canary-hold:
// both releases serve until promote or abort.
const CanaryHeld = "held"

// HeldCanary is what a held canary leaves on each target
// (<base>/canary.json): promote and abort finish it.
type HeldCanary struct {
	Deploy   string       `json:"deploy"` // the deploy id, holding the lock
	Release  string       `json:"release"`
	Previous string       `json:"previous"`
	Who      string       `json:"who"`
	Since    time.Time    `json:"since"`
	Result   CanaryResult `json:"result"`
}

func heldCanaryFile(l Layout) string { return path.Join(l.Base, "canary.json") }

// promotedSite is the release's site without the split, ready for promote.
func promotedSite(l Layout, id string) string { return path.Join(l.Release(id), "promoted.nginx.conf") }

// holdCanary ends the run with the canary serving: on each target the site
// without the split is written beside it (promote switches to it), the
// canary is recorded, the dead man's switch is disarmed, and the lock and
// the journal stay (abort replays it); every later step skips.
func (d *Deployment) holdCanary(ctx context.Context, targets []*targetRun, res CanaryResult) error {
	d.mu.Lock()
	d.held = true // the sites render without the split from here
	d.mu.Unlock()
	for _, tr := range targets {
		data, _ := d.siteData(tr)
		site, err := RenderSite(data)
		if err != nil {
			return err
		}
		if err := tr.host.WriteFile(promotedSite(tr.layout, d.req.ID), site, 0o644); err != nil {
			return err
		}
	}
	for _, tr := range d.targets {
		if tr.noop != "" {
			continue
		}
		hc := HeldCanary{Deploy: d.req.ID, Release: d.req.ID, Who: d.req.Who, Since: time.Now().UTC(), Result: res}
		if tr.previous != nil {
			hc.Previous = tr.previous.ID
		}
		data, _ := json.MarshalIndent(hc, "", "  ")
		if err := tr.host.WriteFile(heldCanaryFile(tr.layout), data, 0o644); err != nil {
			return err
		}
		if tr.lease != nil {
			if err := tr.lease.end(); err != nil {
				return fmt.Errorf("%s: disarming the dead man's switch for the held canary: %w", tr.cfg.Name, err)
			}
			tr.lease = nil
		}
		tr.mu.Lock()
		tr.completed = true // nothing to revert: the canary stays
		tr.mu.Unlock()
	}
	d.log.Info("canary held", "result", res.String())
	return nil
}

// holdingCanary says the run ended holding its canary.
func (d *Deployment) holdingCanary() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.held
}

func (d *Deployment) setCanary(r CanaryResult) {
	d.mu.Lock()
	d.canaryResult = &r
	d.canaryOver = true
	d.mu.Unlock()
}

// CanaryResult is the canary's verdict (nil: no canary ran).
func (d *Deployment) CanaryResult() *CanaryResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.canaryResult
}

// promote renders every canary target's site without the split and
// reloads it: the new release serves every client.
func (d *Deployment) promote(ctx context.Context, targets []*targetRun) error {
	for _, tr := range targets {
		if err := d.writeSite(tr); err != nil {
			return err
		}
		if _, err := tr.host.Run(ctx, "sh", "-c", switchScript(tr.layout, tr.nginxCmds(), Release{ID: d.req.ID, Container: tr.container}, "")); err != nil {
			return fmt.Errorf("%s: promoting the canary: %w", tr.cfg.Name, switchError(err))
		}
	}
	return nil
}

const canaryHeldNote = "the canary is held (--canary-hold): both releases serve until `lawsker-deploy promote` or `lawsker-deploy abort`"
