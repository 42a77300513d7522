package rollout

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// memos, a real app from the Go module proxy, with log collection, a
// canary and maintenance mode: its output and nginx's access lines reach
// the log store (its database password masked), a canary of a new release
// is measured and promoted while clients use it, and maintenance on/off
// answers every client with the page or memos, its health path memos' own.
func TestMemosLogsCanaryAndMaintenance(t *testing.T) {
	r := newAppRig(t, "memos")
	v022 := r.ThirdPartyImage(t, memos022, "memos")
	backend := `"port_env": "MEMOS_PORT", "health_path": "/api/v1/workspace/profile",
	    "env": {"MEMOS_MODE": "prod", "MEMOS_ADDR": "127.0.0.1", "MEMOS_DATA": "/tmp", "MEMOS_DRIVER": "postgres"}`
	cfg := r.config(t, backend, `"categories": ["health"]`)
	cfg.Database.URLEnv = "MEMOS_DSN"
	prom, vlogs := r.Registry.Addr+"/mon/prometheus:test", r.Registry.Addr+"/mon/victoria-logs:test"
	r.Docker.ImportPrometheus(t, prom)
	r.Docker.ImportVictoriaLogs(t, vlogs)
	ports := testenv.ReservePorts(t, 3)
	m := &cfg.Monitoring
	m.Enabled, m.PrometheusURL, m.PrometheusImage, m.GrafanaImage, m.ScrapeInterval = true, fmt.Sprintf("http://127.0.0.1:%d", ports), prom, "none", config.Duration(time.Second)
	m.MetricsPath = "none" // memos serves no Prometheus metrics
	m.Logs.Image, m.Logs.URL, m.Logs.SyslogPort = vlogs, fmt.Sprintf("http://127.0.0.1:%d", ports+1), ports+2

	out, err := r.deploy(t, cfg, v022)
	require.NoError(t, err, "%+v", out)
	client := &http.Client{Timeout: 10 * time.Second}
	for range 20 {
		code, _ := r.status(client, "GET", "/api/v1/workspace/profile", "")
		require.Equal(t, http.StatusOK, code)
	}
	read := func(req LogsRequest) []LogLine {
		req.Config, req.Resolver = cfg, r.resolver()
		var lines []LogLine
		src, err := Logs(t.Context(), req, func(l LogLine) error { lines = append(lines, l); return nil })
		require.NoError(t, err)
		require.Equal(t, LogsFromStore, src)
		return lines
	}
	backendLines := read(LogsRequest{Lines: 0})
	require.NotEmpty(t, backendLines, "memos' output is in the store")
	for _, l := range backendLines {
		assert.NotContains(t, l.Message, "app-pw-memos", "the database password is masked")
	}
	access := read(LogsRequest{Source: SourceAccess, Grep: "/api/v1/workspace/profile"})
	assert.GreaterOrEqual(t, len(access), 20, "nginx's access lines of memos' API")
	assert.Contains(t, access[len(access)-1].Message, `"status":"200"`)

	// A canary of a new memos release (the same image, redeployed) while
	// clients use it: measured from nginx's access log, promoted.
	canary := *cfg
	canary.Rollout.Canary = &config.Canary{Weight: 30, Duration: config.Duration(6 * time.Second), Sticky: true, MaxErrorRate: 0.01, MaxLatencyRatio: 3, MinRequests: 30}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _ := r.status(c, "GET", "/", "")
				mu.Lock()
				codes[code]++
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	dr := r.request(&canary)
	dr.Image, dr.Force = v022, true
	ro, err := Prepare(Request{Deploy: dr})
	require.NoError(t, err)
	t.Cleanup(ro.Close)
	res := runGraph(t, ro)
	out, err = ro.Finish(res)
	require.NoError(t, err, "%+v", out)
	require.NotNil(t, out.Canary)
	assert.Equal(t, deploy.CanaryPromote, out.Canary.Verdict, "%s", out.Canary)
	testenv.Figure(t, "memos canary: %s", out.Canary)

	// Maintenance on and off while the clients go on.
	h, err := connect(t, cfg, r.resolver())
	require.NoError(t, err)
	defer h.Close()
	_, err = deploy.MaintenanceOn(t.Context(), cfg, cfg.Primary(), h, "memos is being upgraded", "tester@ci")
	require.NoError(t, err)
	// A new connection (one kept alive from before may still reach an old
	// nginx worker for its next request).
	client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	code, body := r.status(client, "GET", "/", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "memos is being upgraded")
	code, _ = r.status(client, "GET", "/api/v1/workspace/profile", "")
	assert.Equal(t, http.StatusOK, code, "the health path is memos' own")
	_, err = deploy.MaintenanceOff(t.Context(), cfg, cfg.Primary(), h, "tester@ci")
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("memos through nginx: %v", codes)
	total := 0
	for _, n := range codes {
		total += n
	}
	assert.Equal(t, total, codes[200]+codes[503], "only memos' answers and the maintenance page: %v", codes)
	assert.Greater(t, codes[503], 0)
	testenv.Figure(t, "memos through nginx during a canary and maintenance on/off: %d requests, %v by status", total, codes)
}

func runGraph(t *testing.T, ro *Rollout) *pipelines.Result {
	res := pipelines.Run(t.Context(), ro.Graph(), pipelines.Options{MaxWorkers: 4})
	for _, s := range res.Steps {
		t.Logf("%s %s %s %v", s.Name, s.State, s.Duration().Round(time.Millisecond), s.Err)
	}
	return res
}

func connect(t *testing.T, cfg *config.Config, res *config.Resolver) (*remote.Host, error) {
	e, err := deploy.Endpoint(cfg.Primary(), res)
	if err != nil {
		return nil, err
	}
	return remote.Connect(t.Context(), e, 1)
}
