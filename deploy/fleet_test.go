package deploy

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// fleetRig is three web hosts and a worker behind a front load balancer.
type fleetRig struct {
	*testenv.Fleet
	portLo int
	images map[string]string
	last   *Deployment
}

func newFleetRig(t *testing.T) *fleetRig {
	return &fleetRig{Fleet: testenv.StartFleet(t, "sample", 3, 1), portLo: testenv.ReservePorts(t, 60), images: map[string]string{}}
}

func (f *fleetRig) image(t *testing.T, version string, flags ...string) string {
	key := version + strings.Join(flags, " ")
	if ref, ok := f.images[key]; ok {
		return ref
	}
	bin := testenv.BuildStatic(t, "./examples/sample/backend", "backend", append([]string{"-X main.version=" + version}, flags...)...)
	ref := f.Docker.PushBinaryImage(t, bin, f.Registry.Addr+"/sample/backend", version)
	f.images[key] = ref
	return ref
}

// config lists the hosts (all, or the web hosts named) as targets.
func (f *fleetRig) config(t *testing.T, hosts []*testenv.FleetHost, extra string) *config.Config {
	var targets []string
	for _, h := range hosts {
		targets = append(targets, f.TargetJSON(h, "sample"))
	}
	js := fmt.Sprintf(`{"version": 1, "app": "sample", "targets": [%s],
	  "registry": {"host": %q},
	  "backend": {"image": "%s/sample/backend", "network": "host", "worker_command": ["/app/backend", "worker"],
	    "health_gate": {"interval": "200ms", "deadline": "6s", "consecutive_passes": 2}, "host_port_min": %d, "host_port_max": %d},
	  "snapshots": {"enabled": false}, "execution": {"max_workers": 4}%s}`,
		strings.Join(targets, ",\n"), f.Registry.Addr, f.Registry.Addr, f.portLo, f.portLo+59, extra)
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func (f *fleetRig) deploy(t *testing.T, cfg *config.Config, image string, tweak ...func(*Request)) (*pipelines.Result, time.Duration) {
	req := Request{Config: cfg, Image: image, Who: "tester@ci", ID: report.NewID(time.Now()), Resolver: sampleResolver()}
	for _, fn := range tweak {
		fn(&req)
	}
	d, err := Prepare(req)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	f.last = d
	start := time.Now()
	res := pipelines.Run(t.Context(), d.Graph(), pipelines.Options{MaxWorkers: 4})
	return res, time.Since(start)
}

// version is what a web host's nginx serves.
func (f *fleetRig) version(t *testing.T, h *testenv.FleetHost) string {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s:%d/api/v1/version", h.Addr, f.AppPort))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// workers lists the running worker containers of a host, by release version.
func (f *fleetRig) runningWorkers(t *testing.T, h *testenv.FleetHost) []string {
	out := f.Docker.MustRun(t, "ps", "--filter", "label=lawsker.base="+filepath.Join(h.Root, "sample"), "--format", "{{.Names}}")
	var names []string
	for _, n := range strings.Fields(out) {
		if strings.Contains(n, "-worker-") {
			names = append(names, n)
		}
	}
	return names
}

// frontClient sends about rate requests a second through the front load
// balancer until stop; it returns the answers by status (0: no answer).
func (f *fleetRig) frontClient(rate int) (stop func() map[int]int) {
	var mu sync.Mutex
	counts := map[int]int{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	jobs := make(chan struct{}, rate)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				code := 0
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", f.FrontPort))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				counts[code]++
				mu.Unlock()
			}
		}()
	}
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-done:
				close(jobs)
				return
			case <-tick.C:
				select {
				case jobs <- struct{}{}:
				default: // the client is behind: the request is not sent (counted by the rate)
				}
			}
		}
	}()
	return func() map[int]int {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return counts
	}
}

func stepTimes(res *pipelines.Result, name string) (time.Time, time.Time) {
	s, ok := res.Step(name)
	if !ok {
		return time.Time{}, time.Time{}
	}
	return s.Start, s.End
}

// Three web hosts and a worker behind a front load balancer: a rolling
// deploy in batches of one (each host started, gated, switched and
// verified, and watched, before the next), a release whose second batch
// fails (the first host is put back, the third never touched, the worker
// back on its previous release), and no failed request through the front
// load balancer the whole time.
func TestFleetRollingBatchesBehindAFrontLoadBalancer(t *testing.T) {
	f := newFleetRig(t)
	cfg := f.config(t, f.Hosts, `, "rollout": {"batch": "1", "batch_watch": "1s"}`)
	web := f.Hosts[:3]
	worker := f.Hosts[3]

	res, _ := f.deploy(t, cfg, f.image(t, "v1"))
	require.NoError(t, res.Err())
	for _, h := range web {
		assert.Equal(t, "v1", f.version(t, h), h.Name)
	}
	require.Len(t, f.runningWorkers(t, worker), 1, "the worker host runs the worker")

	stop := f.frontClient(200)
	res, took := f.deploy(t, cfg, f.image(t, "v2"))
	require.NoError(t, res.Err())
	for _, h := range web {
		assert.Equal(t, "v2", f.version(t, h), h.Name)
	}
	// Batch by batch: a host starts only after the previous one was
	// switched, verified and watched.
	for i := 1; i < 3; i++ {
		_, verified := stepTimes(res, "verify:"+web[i-1].Name)
		_, watched := stepTimes(res, fmt.Sprintf("batch-%d", i))
		started, _ := stepTimes(res, "start-backend:"+web[i].Name)
		assert.True(t, verified.Before(watched) && watched.Before(started), "%s starts after batch %d is verified and watched", web[i].Name, i)
	}
	workers := f.runningWorkers(t, worker)
	require.Len(t, workers, 1, "the previous worker was stopped: %v", workers)
	assert.Contains(t, f.workerLog(t, workers[0]), "worker v2 started")
	t.Logf("rolling deploy over 3 hosts: %s", took)

	// A switch back through the front load balancer: every host on v1
	// again, the worker too; then v2 again.
	sb, err := PrepareSwitchBack(Request{Config: cfg, Who: "tester@ci", ID: report.NewID(time.Now()), Resolver: sampleResolver()})
	require.NoError(t, err)
	t.Cleanup(sb.Close)
	require.NoError(t, pipelines.Run(t.Context(), sb.Graph(), pipelines.Options{MaxWorkers: 4}).Err())
	for _, h := range web {
		assert.Equal(t, "v1", f.version(t, h), "%s switched back", h.Name)
	}
	workers = f.runningWorkers(t, worker)
	require.Len(t, workers, 1, "%v", workers)
	assert.Contains(t, f.workerLog(t, workers[0]), "worker v1 started")
	res, _ = f.deploy(t, cfg, f.image(t, "v2"), func(r *Request) { r.Force = true })
	require.NoError(t, res.Err())

	// v3 fails on the second host: its sshd refuses tunnels, so its health
	// gate cannot reach the backend. The first host is put back on v2.
	allow := web[1].SSHD.DenyForwarding(t)
	res, _ = f.deploy(t, cfg, f.image(t, "v3"))
	require.Error(t, res.Err())
	assert.ErrorContains(t, stepErr(res, "health-gate:"+web[1].Name), "health gate")
	s, _ := res.Step("start-backend:" + web[2].Name)
	assert.Equal(t, pipelines.Skipped, s.State, "the third host was never touched")
	for _, h := range web {
		assert.Equal(t, "v2", f.version(t, h), "%s serves v2 again", h.Name)
	}
	workers = f.runningWorkers(t, worker)
	require.Len(t, workers, 1, "the v3 worker removed, the v2 worker started again: %v", workers)
	assert.Contains(t, f.workerLog(t, workers[0]), "worker v2 started")
	allow()

	// A host that cannot be reached fails the deploy before anything
	// changes; --skip-unreachable names it and the others go on.
	// web-3 as seen through a port where no sshd listens.
	down, downSSH := *web[2], *web[2].SSHD
	downSSH.Port = testenv.FreePort(t)
	down.SSHD = &downSSH
	cfg = f.config(t, []*testenv.FleetHost{web[0], web[1], &down, worker}, `, "rollout": {"batch": "1", "batch_watch": "1s"}`)
	res, _ = f.deploy(t, cfg, f.image(t, "v4"))
	require.Error(t, res.Err())
	assert.ErrorContains(t, stepErr(res, "lock:"+web[2].Name), "connection refused")
	s, _ = res.Step("start-backend:" + web[0].Name)
	assert.Equal(t, pipelines.Skipped, s.State, "nothing started while a host was unreachable")
	for _, h := range web {
		assert.Equal(t, "v2", f.version(t, h), "%s unchanged", h.Name)
	}
	res, _ = f.deploy(t, cfg, f.image(t, "v4"), func(r *Request) { r.SkipUnreachable = []string{web[2].Name} })
	require.NoError(t, res.Err())
	assert.Equal(t, "v4", f.version(t, web[0]))
	assert.Equal(t, "v4", f.version(t, web[1]))
	assert.Equal(t, "v2", f.version(t, web[2]), "the unreachable host keeps its release (its nginx still serves)")
	require.Len(t, f.last.Warnings(), 1)
	assert.Contains(t, f.last.Warnings()[0], "deployed without the unreachable target(s) "+web[2].Name)
	counts := stop()
	t.Logf("through the front load balancer: %v", counts)
	total := 0
	for _, n := range counts {
		total += n
	}
	assert.Equal(t, map[int]int{200: total}, counts, "no failed request through the front load balancer")
	testenv.Figure(t, "front load balancer at 200 requests/s during a rolling deploy over 3 hosts (batches of one), a switch back, a failed batch put back and a deploy without an unreachable host: %d requests, %d failed", total, total-counts[200])
}

// Rolling deploy time beyond its health gates and batch watches grows by
// under a second per host: deploys over 1, 2 and 3 web hosts in batches
// of one.
func TestFleetRollingTimePerHost(t *testing.T) {
	f := newFleetRig(t)
	var extra []time.Duration
	for n := 1; n <= 3; n++ {
		cfg := f.config(t, f.Hosts[:n], `, "rollout": {"batch": "1", "batch_watch": "200ms"}`)
		// The first deploy of each size starts from scratch; the second is
		// the measured one (images pulled, a previous release warm).
		res, _ := f.deploy(t, cfg, f.image(t, "v1"), func(r *Request) { r.Force = true })
		require.NoError(t, res.Err())
		res, took := f.deploy(t, cfg, f.image(t, "v2"), func(r *Request) { r.Force = true })
		require.NoError(t, res.Err())
		waits := time.Duration(0)
		for _, s := range res.Steps {
			if strings.HasPrefix(s.Name, StepHealthGate+":") || strings.HasPrefix(s.Name, StepBatch+"-") {
				waits += s.Duration()
			}
		}
		extra = append(extra, took-waits)
		for _, s := range res.Steps {
			t.Logf("%d hosts: %s %s %s (+%s)", n, s.Name, s.State, s.Duration().Round(time.Millisecond), s.Start.Sub(res.Steps[0].Start).Round(time.Millisecond))
		}
	}
	per := (extra[2] - extra[0]) / 2
	testenv.Figure(t, "rolling deploy beyond its health gates and batch watches: 1 host %s, 2 hosts %s, 3 hosts %s: %s per added host",
		extra[0].Round(time.Millisecond), extra[1].Round(time.Millisecond), extra[2].Round(time.Millisecond), per.Round(time.Millisecond))
}

func (f *fleetRig) workerLog(t *testing.T, name string) string {
	out, _ := f.Docker.Run(t.Context(), "logs", name)
	return out
}
