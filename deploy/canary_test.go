package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestJudgeCanary(t *testing.T) {
	c := config.Canary{Weight: 10, MaxErrorRate: 0.01, MaxLatencyRatio: 1.5, MinRequests: 100}
	ok := CanaryFigures{Requests: 200, Errors: 1, ErrorRate: 0.005, P95MS: 12}
	old := CanaryFigures{Requests: 1800, P95MS: 10}
	v, _ := JudgeCanary(c, ok, old)
	assert.Equal(t, CanaryPromote, v)
	v, why := JudgeCanary(c, CanaryFigures{Requests: 99}, old)
	assert.Equal(t, CanaryWait, v, "too few requests is wait, not pass")
	assert.Contains(t, why, "99 of the 100 requests needed")
	v, why = JudgeCanary(c, CanaryFigures{Requests: 200, Errors: 4, ErrorRate: 0.02, P95MS: 10}, old)
	assert.Equal(t, CanaryAbort, v)
	assert.Contains(t, why, "error rate 2.00% over the limit 1.00%")
	v, why = JudgeCanary(c, CanaryFigures{Requests: 200, P95MS: 70}, old)
	assert.Equal(t, CanaryAbort, v)
	assert.Contains(t, why, "p95 70.0 ms over 1.5x")
	v, _ = JudgeCanary(c, CanaryFigures{Requests: 200, P95MS: 60}, old)
	assert.Equal(t, CanaryPromote, v, "within the 50 ms slack")

	n, o := ParseCanaryLog([]byte("1.1 new 200 0.010\n1.2 old 200 0.002\n1.3 new 502 0.020\nbroken line\n"), "r2", "r1")
	assert.Equal(t, CanaryFigures{Release: "r2", Requests: 2, Errors: 1, ErrorRate: 0.5, P95MS: 20}, n)
	assert.Equal(t, CanaryFigures{Release: "r1", Requests: 1, P95MS: 2}, o)
}

// A canary on plain nginx: 10% of the clients on the new release (the
// share measured from the access log), a client with the cookie stays on
// its release, the analysis promotes; then a canary whose release fails
// one request in two is aborted and the previous release serves again.
func TestCanaryPromotesAndAborts(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, `, "rollout": {"canary": {"weight": 10, "duration": "7s", "sticky": true, "min_requests": 50}}`)
	run := r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1"))
	require.NoError(t, run.res.Err())
	require.Nil(t, run.d.CanaryResult(), "a first deploy has nothing to compare with")
	first := r.state(t).Releases[0].ID

	// Clients without cookies at about 400 requests a second.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	byRelease := map[string]int{}
	failed := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort))
				mu.Lock()
				if err != nil || resp.StatusCode != http.StatusOK {
					failed++
				} else {
					byRelease[resp.Header.Get(ReleaseHeader)]++
				}
				mu.Unlock()
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	// A sticky client, once the split is in place: the release it first
	// got, every time (until the promotion sends everyone to the new one).
	var sticky []string
	stickyDone := make(chan struct{})
	go func() {
		defer close(stickyDone)
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for range 40 {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sticky = append(sticky, resp.Header.Get(ReleaseHeader))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	run = r.deploy(t, cfg, r.image(t, "v2"), frontend(t, "v2"))
	require.NoError(t, run.res.Err())
	close(stop)
	wg.Wait()
	<-stickyDone
	res := run.d.CanaryResult()
	require.NotNil(t, res)
	assert.Equal(t, CanaryPromote, res.Verdict, "%s", res)
	assert.Equal(t, first, res.Old.Release)
	r.serves(t, "v2")
	total := res.New.Requests + res.Old.Requests
	require.GreaterOrEqual(t, total, 2000, "%s", res)
	assert.InDelta(t, 10, res.Measured, 2, "the measured share is within 2 points of the weight: %s", res)
	testenv.Figure(t, "canary share measured from nginx's access log: %.2f%% for a weight of 10%% over %d requests (%s)", res.Measured, total, res)
	assert.Zero(t, failed, "no client request failed: %v", byRelease)
	// Once the client has its cookie, it changes release at most once: at
	// the promotion, from the serving release to the new one.
	changes := 0
	for i := 1; i < len(sticky); i++ {
		if sticky[i] != sticky[i-1] {
			changes++
			assert.Equal(t, run.d.ID(), sticky[i], "the only change is the promotion: %v", sticky)
		}
	}
	assert.LessOrEqual(t, changes, 1, "a client with the cookie stays on one release: %v", sticky)

	// v3 fails one request in two: the analysis aborts it, v2 serves again.
	ctx, cancel := context.WithCancel(t.Context())
	clientsDone := make(chan struct{})
	go func() { // clients meanwhile
		defer close(clientsDone)
		client := &http.Client{Timeout: 5 * time.Second}
		for ctx.Err() == nil {
			if resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	bad := r.deploy(t, cfg, r.image(t, "v3", "-X main.failEvery=2"), frontend(t, "v3"))
	cancel()
	<-clientsDone
	err := bad.res.Err()
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrCanaryAborted), "%v", err)
	res = bad.d.CanaryResult()
	require.NotNil(t, res)
	assert.Equal(t, CanaryAbort, res.Verdict)
	assert.Contains(t, res.Reason, "over the limit 1.00% (max_error_rate)")
	assert.Greater(t, res.New.ErrorRate, 0.3, "the canary's figures: %s", res.New)
	assert.Zero(t, res.Old.Errors, "the serving release's figures beside them: %s", res.Old)
	r.serves(t, "v2")
	assert.Equal(t, run.d.ID(), r.state(t).Releases[len(r.state(t).Releases)-1].ID, "v2 is current again")
	r.unlocked(t)
}

// deploy --canary-hold stops after the analysis with both releases
// serving and the lock held; promote finishes it (the new release alone),
// abort puts the previous release back alone (the new one removed).
func TestCanaryHoldThenPromoteOrAbort(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, `, "rollout": {"canary": {"weight": 50, "duration": "2s", "sticky": false, "min_requests": 5}}`)
	require.NoError(t, r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1")).res.Err())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for ctx.Err() == nil {
			if resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	hold := func(r2 *Request) { r2.CanaryHold = true }
	held := r.deploy(t, cfg, r.image(t, "v2"), frontend(t, "v2"), hold)
	require.NoError(t, held.res.Err())
	res := held.d.CanaryResult()
	require.NotNil(t, res)
	assert.Equal(t, CanaryHeld, res.Verdict)
	seen := map[string]bool{}
	for range 40 {
		_, v := r.get(t, "/api/v1/version")
		seen[v] = true
	}
	assert.Equal(t, map[string]bool{"v1": true, "v2": true}, seen, "both releases serve while the canary is held")
	refused := r.deploy(t, cfg, r.image(t, "v3"), frontend(t, "v3"))
	require.Error(t, refused.res.Err())
	assert.ErrorIs(t, refused.res.Err(), ErrLocked, "the held canary keeps the lock")

	h, err := connectTarget(t.Context(), r.sshd, mustRead(t, r.sshd.KeyPath))
	require.NoError(t, err)
	defer h.Close()
	hc, err := PromoteCanary(t.Context(), cfg, cfg.Primary(), h)
	require.NoError(t, err)
	assert.Equal(t, held.d.ID(), hc.Release)
	r.serves(t, "v2")
	r.unlocked(t)
	assert.True(t, r.state(t).Releases[len(r.state(t).Releases)-1].Verified)
	_, err = PromoteCanary(t.Context(), cfg, cfg.Primary(), h)
	assert.ErrorIs(t, err, ErrNoHeldCanary)

	held = r.deploy(t, cfg, r.image(t, "v3"), frontend(t, "v3"), hold)
	require.NoError(t, held.res.Err())
	d, err := PrepareAbort(t.Context(), Request{Config: cfg, Resolver: sampleResolver(), Who: "tester@ci"})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	ab := pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 4, ContinueOnFailure: true})
	require.NoError(t, ab.Err())
	cancel()
	r.serves(t, "v2")
	r.unlocked(t)
	for _, name := range r.running(t) {
		assert.NotContains(t, name, held.d.ID(), "the aborted release's backend is removed")
	}
	assert.Equal(t, hc.Release, r.state(t).Releases[len(r.state(t).Releases)-1].ID)
}
