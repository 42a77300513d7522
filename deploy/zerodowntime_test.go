package deploy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
)

// loadGen sends GET requests through nginx at a steady rate until stopped,
// counting every request and every failure (transport error or non-200).
type loadGen struct {
	total, failed atomic.Int64
	mu            sync.Mutex
	firstFailure  string
	stop          context.CancelFunc
	done          sync.WaitGroup
}

func startLoad(url string, rate int) *loadGen {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loadGen{stop: cancel}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.done.Add(1)
			go func() {
				defer l.done.Done()
				l.total.Add(1)
				resp, err := client.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if l.firstFailure == "" {
						l.firstFailure = err.Error()
					}
					l.mu.Unlock()
				}
			}()
		}
	}()
	return l
}

func (l *loadGen) finish() (total, failed int64, first string) {
	l.stop()
	l.done.Wait()
	return l.total.Load(), l.failed.Load(), l.firstFailure
}

// TestZeroDowntime: 400 requests/s offered (at least 200/s must get through,
// or the load was too weak to prove anything) through nginx for the whole of a v1 to
// v2 deploy, then of a switch back: not one request fails.
func TestZeroDowntime(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1, v2 := r.image(t, "v1"), r.image(t, "v2")
	require.NoError(t, r.deploy(t, cfg, v1, frontend(t, "v1")).res.Err())
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort)

	l := startLoad(url, 400)
	start := time.Now()
	require.NoError(t, r.deploy(t, cfg, v2, frontend(t, "v2")).res.Err())
	elapsed := time.Since(start)
	total, failed, first := l.finish()
	t.Logf("v1 -> v2 deploy under load: %d requests in %s (%.0f/s), %d failed %s", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), failed, first)
	assert.Zero(t, failed, first)
	assert.GreaterOrEqual(t, float64(total)/elapsed.Seconds(), 200.0, "the load was at least 200 requests/s")
	r.serves(t, "v2")

	l = startLoad(url, 400)
	start = time.Now()
	d, err := PrepareSwitchBack(Request{Config: cfg, Who: "tester@ci", ID: report.NewID(time.Now()),
		Resolver: &config.Resolver{LookupEnv: func(string) (string, bool) { return "", false }}})
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 2}).Err())
	time.Sleep(300 * time.Millisecond) // keep the load on past the reload
	elapsed = time.Since(start)
	total, failed, first = l.finish()
	t.Logf("switch back under load: %d requests in %s, %d failed %s", total, elapsed.Round(time.Millisecond), failed, first)
	assert.Zero(t, failed, first)
	r.serves(t, "v1")
}
