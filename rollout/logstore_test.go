package rollout

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// logsConfig is the rig's configuration with monitoring and the log store
// (images made here from the binaries setup-testenv built).
func (r *rig) logsConfig(t *testing.T) *config.Config {
	prom, vlogs := r.Registry.Addr+"/mon/prometheus:test", r.Registry.Addr+"/mon/victoria-logs:test"
	r.Docker.ImportPrometheus(t, prom)
	r.Docker.ImportVictoriaLogs(t, vlogs)
	ports := testenv.ReservePorts(t, 3)
	return r.config(t, fmt.Sprintf(`, "monitoring": {"enabled": true, "prometheus_url": "http://127.0.0.1:%d", "prometheus_image": %q, "grafana_image": "none", "scrape_interval": "1s",
	    "logs": {"image": %q, "url": "http://127.0.0.1:%d", "syslog_port": %d, "error_lines": 5}}`, ports, prom, vlogs, ports+1, ports+2))
}

// monitoring.logs: the backend's output and nginx's access log in the log
// store on the target; logs reads them there (secrets masked); a release
// that fails its gate has its error lines in the outcome (counted, masked);
// a store that is down: the deploy goes on with one warning, and logs falls
// back to docker logs, saying so.
func TestLogsGoToTheStoreOnTheTarget(t *testing.T) {
	r := newRig(t)
	cfg := r.logsConfig(t)
	name := "sample"
	leak := "-X main.leakEnv=SAMPLE_DATABASE_URL"
	_, out, err := r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v1", leak))
	require.NoError(t, err, "%+v", out)
	assert.Empty(t, out.Warnings)
	ps := r.Docker.MustRun(t, "ps", "--filter", "label=lawsker.role=logs", "--filter", "label=lawsker.base="+r.Root+"/"+name, "--format", "{{.Names}} {{.Status}}")
	require.Contains(t, ps, "Up", "the store runs as a container on the target")

	read := func(req LogsRequest) ([]LogLine, string, error) {
		req.Config, req.Resolver = cfg, r.resolver()
		var lines []LogLine
		src, err := Logs(t.Context(), req, func(l LogLine) error { lines = append(lines, l); return nil })
		return lines, src, err
	}
	lines, src, err := read(LogsRequest{})
	require.NoError(t, err)
	assert.Equal(t, LogsFromStore, src)
	text := joinLines(lines)
	assert.Contains(t, text, "sample backend v1 listening on")
	assert.Contains(t, text, "config: SAMPLE_DATABASE_URL=postgres", "the careless line is there")
	assert.NotContains(t, text, r.pg.Password, "with the password masked")

	// nginx's access log under load: every line nginx wrote is in the store.
	hostLog := r.Nginx.Dir + "/host-access.log"
	before := countLines(t, hostLog)
	const n = 3000
	startLoad := time.Now()
	var sent atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	paced(t, 4, n, 1500, func() {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version?token=secret-query", r.AppPort))
		if err == nil {
			resp.Body.Close()
			sent.Add(1)
		}
	})
	loadTime := time.Since(startLoad)
	// nginx writes a request's line once its answer is sent: the last
	// lines may reach its file a moment after the client had them.
	wrote := countLines(t, hostLog) - before
	for deadline := time.Now().Add(5 * time.Second); wrote < int(sent.Load()) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		wrote = countLines(t, hostLog) - before
	}
	var access []LogLine
	deadline := time.Now().Add(10 * time.Second)
	for {
		access, src, err = read(LogsRequest{Source: SourceAccess, Since: time.Minute, Grep: "/api/v1/version"})
		require.NoError(t, err)
		if len(access) >= wrote || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	assert.Equal(t, LogsFromStore, src)
	assert.Equal(t, int(sent.Load()), wrote, "nginx wrote a line per request")
	assert.Equal(t, wrote, len(access), "every access line nginx wrote is in the store")
	require.NotEmpty(t, access)
	a := access[0]
	assert.Equal(t, SourceAccess, a.Source)
	for _, field := range []string{`"status":"200"`, `"upstream":"127.0.0.1:`, `"request_time":"`, `"method":"GET"`, `"path":"/api/v1/version"`} {
		assert.Contains(t, a.Message, field)
	}
	assert.NotContains(t, a.Message, "secret-query", "the query string is not logged")
	assert.NotEmpty(t, a.Release, "the access line names the release")
	testenv.Figure(t, "nginx access lines in the log store under load: %d stored of %d nginx wrote (%d requests at %.0f/s)", len(access), wrote, sent.Load(), float64(sent.Load())/loadTime.Seconds())

	// A release that logs and fails its gate: its error lines, counted and masked.
	cfgBad := *cfg
	bad, out, err := r.release(t, &cfgBad, r.Image(t, "./examples/sample/backend", "sample/backend", "v2-unhealthy", leak, "-X main.healthy=false"))
	require.Error(t, err)
	bad.ReadErrorLines(t.Context(), &out)
	assert.Equal(t, "the log store", out.ErrorLinesFrom)
	require.NotEmpty(t, out.ErrorLines, "the failing release's error lines")
	l := out.ErrorLines[0]
	assert.Contains(t, l.Line, "ERROR health: database unreachable at postgresql://")
	assert.NotContains(t, l.Line, r.pg.Password, "masked")
	assert.Greater(t, l.Count, 1, "a repeated line comes once with its count")
	assert.Contains(t, FormatErrorLines(out.ErrorLines), "times, the last at")

	// follow from the store, ended by Ctrl-C.
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan LogLine, 100)
	done := make(chan error, 1)
	go func() {
		_, err := Logs(ctx, LogsRequest{Config: cfg, Resolver: r.resolver(), Source: SourceAccess, Follow: true}, func(l LogLine) error {
			select {
			case got <- l:
			default:
			}
			return nil
		})
		done <- err
	}()
	followed := false
	for i := 0; i < 50 && !followed; i++ {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version?follow", r.AppPort))
		if err == nil {
			resp.Body.Close()
		}
		select {
		case l := <-got:
			followed = strings.Contains(l.Message, "/api/v1/version")
		case <-time.After(200 * time.Millisecond):
		}
	}
	assert.True(t, followed, "--follow printed a new access line")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the follow did not end with its context")
	}

	// The store goes down: the next deploy goes on with one warning (the
	// store cannot start: its port is taken), logs falls back and says so.
	store := monitoring.ContainerName(monitoring.Target{App: name, Name: deploy.NewLayout(cfg, cfg.Primary()).Name}, "logs")
	r.Docker.MustRun(t, "rm", "-f", store)
	squat := testenv.Listen(t, strings.TrimPrefix(cfg.Monitoring.Logs.URL, "http://"))
	defer squat.Close()
	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v3"))
	require.NoError(t, err, "%+v", out)
	require.Len(t, out.Warnings, 1, "one warning")
	assert.Contains(t, out.Warnings[0], "the log store is not running on local")
	lines, src, err = read(LogsRequest{})
	require.NoError(t, err)
	assert.Contains(t, src, "read with docker logs over SSH: the log store does not answer on local")
	assert.Contains(t, joinLines(lines), "sample backend v3 listening on")
	_, _, err = read(LogsRequest{Source: SourceAccess})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nginx's logs are only in the log store, which does not answer")
}

func joinLines(lines []LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Message + "\n")
	}
	return b.String()
}

func countLines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(b), "\n")
}

// paced runs fn n times from workers goroutines at about rate per second.
func paced(t *testing.T, workers, n, rate int, fn func()) {
	var next atomic.Int64
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	jobs := make(chan struct{})
	done := make(chan struct{})
	for range workers {
		go func() {
			for range jobs {
				fn()
			}
			done <- struct{}{}
		}()
	}
	for next.Add(1) <= int64(n) {
		<-tick.C
		jobs <- struct{}{}
	}
	close(jobs)
	for range workers {
		<-done
	}
}
