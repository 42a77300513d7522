package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/logstore"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// Grafana gets the log store as a data source and an error-lines panel
// whose query, run against the real store, returns the release's error
// lines and nothing else.
func TestGrafanaLogsPanelQueriesTheStore(t *testing.T) {
	cfg := parse(t, `, "logs": {"url": "http://127.0.0.1:19428"}`)
	files, err := Render(cfg, Input{Backends: []string{"127.0.0.1:18000"}, Release: "r2", Name: "sample_production_abcd"})
	require.NoError(t, err)
	ds := string(files["grafana/provisioning/datasources/lawsker.yml"])
	assert.Contains(t, ds, "type: victoriametrics-logs-datasource")
	assert.Contains(t, ds, "url: http://127.0.0.1:19428")
	dash := string(files["grafana/dashboards/lawsker.json"])
	assert.Contains(t, dash, `"title": "Error lines of release r2"`)
	query := ErrorLinesPanelQuery("sample_production_abcd", "r2")
	quoted, _ := json.Marshal(query)
	assert.Contains(t, dash, string(quoted), "the panel holds the query")

	off := parse(t, `, "logs": {"enabled": false}`)
	files, err = Render(off, Input{Backends: []string{"127.0.0.1:18000"}, Release: "r2", Name: "sample_production_abcd"})
	require.NoError(t, err)
	assert.NotContains(t, string(files["grafana/provisioning/datasources/lawsker.yml"]), "VictoriaLogs")

	vl := testenv.StartVictoriaLogs(t)
	c := logstore.New(vl.URL, nil)
	now := time.Now()
	entry := func(tag, msg string, ago time.Duration) logstore.Entry {
		return logstore.Entry{Time: now.Add(-ago), Message: msg, Fields: map[string]string{"app_name": tag}}
	}
	require.NoError(t, c.Ingest(t.Context(), []logstore.Entry{
		entry(BackendTag("sample_production_abcd", "r2"), "listening on 127.0.0.1:18000", 3*time.Second),
		entry(BackendTag("sample_production_abcd", "r2"), "ERROR: database unreachable", 2*time.Second),
		entry(BackendTag("sample_production_abcd", "r2"), "Traceback (most recent call last):", time.Second),
		entry(BackendTag("sample_production_abcd", "r1"), "ERROR of the release before", time.Second),
		entry(BackendTag("sample_production_abcd", "r2"), "terror is not an error word in this line", 0),
	}))
	require.NoError(t, c.Flush(t.Context()))
	var got []string
	require.NoError(t, c.Query(t.Context(), logstore.Query{Filter: query}, func(e logstore.Entry) error { got = append(got, e.Message); return nil }))
	assert.Equal(t, []string{"ERROR: database unreachable", "Traceback (most recent call last):", "terror is not an error word in this line"}, got,
		"the panel's query: the release's lines with an error word")
	lines, err := ReadErrorLines(t.Context(), c, "local", "sample_production_abcd", "r2", now.Add(-time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, lines, 3)
	assert.Equal(t, "ERROR: database unreachable", lines[0].Line)
	assert.True(t, IsErrorLine("terror is not an error word in this line"), "it has the word error")
	assert.False(t, IsErrorLine("terrors and errorless lines"))
}

// The log store on a target: started as a container, left alone when it
// runs with the same settings, restarted when they change; its settings
// are in the monitoring folder and RestoreLogStore brings them back.
func TestLogStoreOnATarget(t *testing.T) {
	h := testenv.StartTargetHost(t, "sample")
	image := h.Registry.Addr + "/lawsker-test/victoria-logs:" + strings.ToLower(t.Name())
	h.Docker.ImportVictoriaLogs(t, image)
	ports := testenv.ReservePorts(t, 2)
	cfg := parse(t, fmt.Sprintf(`, "logs": {"image": %q, "url": "http://127.0.0.1:%d", "syslog_port": %d, "retention": "48h"}`, image, ports, ports+1))
	key, err := os.ReadFile(h.SSHD.KeyPath)
	require.NoError(t, err)
	host, err := remote.Connect(t.Context(), remote.Endpoint{Host: h.SSHD.Host, Port: h.SSHD.Port, User: h.SSHD.User, PrivateKey: key, KnownHosts: h.SSHD.KnownHosts}, 1)
	require.NoError(t, err)
	defer host.Close()
	tgt := Target{Host: host, Base: filepath.Join(h.Root, "sample"), App: "sample", Name: fmt.Sprintf("sample_production_%d", ports), Docker: docker{h.Docker.Host}}
	t.Cleanup(func() { _, _ = h.Docker.Run(context.Background(), "rm", "-f", ContainerName(tgt, "logs")) })

	s, err := LogStoreFor(cfg)
	require.NoError(t, err)
	assert.Equal(t, "2d", s.Retention)
	state, err := EnsureLogStore(t.Context(), tgt, s)
	require.NoError(t, err)
	assert.Equal(t, LogStoreStarted, state)
	state, err = EnsureLogStore(t.Context(), tgt, s)
	require.NoError(t, err)
	assert.Equal(t, LogStoreRunning, state, "same settings: left alone")
	args := h.Docker.MustRun(t, "inspect", "--format", "{{json .Args}}", ContainerName(tgt, "logs"))
	assert.Contains(t, args, "-retentionPeriod=2d")
	assert.Contains(t, args, fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", ports))

	// A line over syslog UDP, as Docker and nginx send them, is stored.
	c := StoreClient(host, s.Listen)
	testenv.SendSyslog(t, fmt.Sprintf("127.0.0.1:%d", ports+1), "lk_test", "hello from syslog")
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for len(got) == 0 && time.Now().Before(deadline) {
		_ = c.Flush(t.Context())
		require.NoError(t, c.Query(t.Context(), logstore.Query{Fields: map[string]string{"app_name": "lk_test"}}, func(e logstore.Entry) error { got = append(got, e.Message); return nil }))
		time.Sleep(100 * time.Millisecond)
	}
	assert.Equal(t, []string{"hello from syslog"}, got)

	s2 := s
	s2.Retention = "3d"
	state, err = EnsureLogStore(t.Context(), tgt, s2)
	require.NoError(t, err)
	assert.Equal(t, LogStoreRestarted, state, "new settings: restarted")

	// The monitoring folder (what snapshots carry) holds the settings; a
	// restored folder with the first ones brings them back.
	first, err := os.ReadFile(LogStoreSettings(tgt.Base))
	require.NoError(t, err)
	assert.Contains(t, string(first), `"retention": "3d"`)
	require.NoError(t, os.WriteFile(LogStoreSettings(tgt.Base), []byte(strings.Replace(string(first), `"3d"`, `"2d"`, 1)), 0o644))
	state, err = RestoreLogStore(t.Context(), tgt)
	require.NoError(t, err)
	assert.Equal(t, LogStoreRestarted, state)
	args = h.Docker.MustRun(t, "inspect", "--format", "{{json .Args}}", ContainerName(tgt, "logs"))
	assert.Contains(t, args, "-retentionPeriod=2d")

	require.NoError(t, os.WriteFile(LogStoreSettings(tgt.Base), []byte(`{"image": ""}`), 0o644))
	_, err = RestoreLogStore(t.Context(), tgt)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "victoria-logs.json: not the settings of a log store")
}

// An app with no Prometheus metrics (memos): monitoring.metrics_path
// "none" leaves its backend unscraped; another path is scraped there.
func TestMetricsPathOfTheApp(t *testing.T) {
	files, err := Render(parse(t, `, "metrics_path": "none"`), Input{Backends: []string{"127.0.0.1:18000"}, Release: "r1"})
	require.NoError(t, err)
	assert.NotContains(t, string(files["prometheus.yml"]), "job_name: backend")
	require.NoError(t, Check(t.Context(), files))
	files, err = Render(parse(t, `, "metrics_path": "/internal/metrics"`), Input{Backends: []string{"127.0.0.1:18000"}, Release: "r1"})
	require.NoError(t, err)
	assert.Contains(t, string(files["prometheus.yml"]), `metrics_path: "/internal/metrics"`)
	require.NoError(t, Check(t.Context(), files))
}
