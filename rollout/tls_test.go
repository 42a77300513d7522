package rollout

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/snapshots"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// A deploy with tls.enabled: the first one serves HTTP, obtains the
// certificates through HTTP-01 (Pebble validating against the release's
// nginx site), then switches the site to HTTPS and verifies over it; the
// next one renders HTTPS at once and keeps the certificates.
func TestDeployWithTLS(t *testing.T) {
	h := testenv.StartTargetHost(t, "sample")
	dns := testenv.StartChallTestSrv(t)
	pebble := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: h.AppPort, DNSServer: dns.DNS})
	domains := []string{"a.lawsker.test", "b.lawsker.test"}
	for _, d := range domains {
		dns.AddA(t, d, "127.0.0.1")
	}
	tlsPort := testenv.FreePort(t)
	ports := testenv.ReservePorts(t, 20)
	promImage := "lawsker-test/prometheus:tls-deploy"
	h.Docker.ImportPrometheus(t, promImage)
	promPort := testenv.FreePort(t)
	verification := fmt.Sprintf(`"verification": {"categories": ["health", "security"], "base_url": "https://a.lawsker.test:%d",
	    "connect_to": {"a.lawsker.test:%d": "127.0.0.1:%d"}, "ports": {"scan": [1]}}`, tlsPort, tlsPort, tlsPort)
	js := fmt.Sprintf(`{"version": 1, "app": "sample",
	  "targets": [{"name": "local", "host": "127.0.0.1",
	    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q},
	    "root": %q, "docker": {"host": %q},
	    "nginx": {"prefix": %q, "config": %q, "access_log": %q, "site_path": %q, "listen": %d, "listen_tls": %d, "listen_address": "127.0.0.1"}}],
	  "backend": {"image": "%s/sample/backend", "network": "host",
	    "health_gate": {"interval": "200ms", "deadline": "6s", "consecutive_passes": 2}, "host_port_min": %d, "host_port_max": %d},
	  "domains": ["a.lawsker.test", "b.lawsker.test"],
	  "tls": {"enabled": true, "email": "ops@lawsker.test", "acme_directory": %q, "resolver": %q},
	  "snapshots": {"enabled": false}, %s,
	  "monitoring": {"enabled": true, "prometheus_url": "http://127.0.0.1:%d", "prometheus_image": %q, "grafana_image": "none", "scrape_interval": "1s"},
	  "rollback": {"watch_window": "1s"}}`,
		h.SSHD.User, h.SSHD.Port, h.SSHD.KeyPath, h.SSHD.KnownHosts, h.Root, h.Docker.Host,
		h.Nginx.Dir, h.Nginx.Conf, h.Nginx.Dir+"/host-access.log", h.SitePath("sample"), h.AppPort, tlsPort, h.Registry.Addr, ports, ports+19,
		pebble.Directory, dns.DNS, verification, promPort, promImage)
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	cfg := l.Config
	prom := deploy.NewLayout(cfg, cfg.Targets[0]).Name + "-prometheus" // named after the deployment
	t.Cleanup(func() { _, _ = h.Docker.Run(context.Background(), "rm", "-f", prom) })
	roots := pebble.Roots(t)
	release := func(image string) (Outcome, error) {
		ro, err := Prepare(Request{Roots: roots, Deploy: deploy.Request{Config: cfg, Image: image, Who: "tester@ci", ID: report.NewID(time.Now()),
			Resolver: &config.Resolver{}, ACMEClient: pebble.HTTPClient()}})
		require.NoError(t, err)
		defer ro.Close()
		res := pipelines.Run(t.Context(), ro.Graph(), pipelines.Options{MaxWorkers: 4})
		for _, s := range res.Steps {
			t.Logf("%s %s %s %v", s.Name, s.State, s.Duration().Round(time.Millisecond), s.Err)
		}
		return ro.Finish(res)
	}
	out, err := release(h.Image(t, "./examples/sample/backend", "sample/backend", "v1"))
	require.NoError(t, err, "%+v", out)
	require.Len(t, out.Certificates, 2)
	for _, c := range out.Certificates {
		assert.Equal(t, "issued", c.Action, c.Domain)
	}
	require.NotNil(t, out.Verification)
	assert.False(t, out.Verification.Failed(), "%+v", out.Verification.Results)
	var promChecked bool
	for _, r := range out.Verification.Results {
		promChecked = promChecked || (r.Name == "prometheus" && r.Status == "pass")
	}
	assert.True(t, promChecked, "the monitoring step started Prometheus and the suite found it healthy: %+v", out.Verification.Results)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "b.lawsker.test"}, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/api/v1/version", tlsPort))
	require.NoError(t, err, "HTTPS with b's certificate, chained to Pebble's root")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "v1", strings.TrimSpace(string(body)))
	assert.Contains(t, resp.Header.Get("Strict-Transport-Security"), "max-age=63072000")
	assert.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/v1/version?x=1", h.AppPort), nil)
	req.Host = "a.lawsker.test"
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	assert.Equal(t, fmt.Sprintf("https://a.lawsker.test:%d/api/v1/version?x=1", tlsPort), resp.Header.Get("Location"))
	old := &tls.Config{RootCAs: roots, ServerName: "a.lawsker.test", MaxVersion: tls.VersionTLS11}
	_, err = tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), old)
	assert.Error(t, err, "TLS 1.1 is refused")

	// The next release renders HTTPS at once; the certificates are kept.
	out, err = release(h.Image(t, "./examples/sample/backend", "sample/backend", "v2"))
	require.NoError(t, err, "%+v", out)
	for _, c := range out.Certificates {
		assert.Equal(t, "kept", c.Action, c.Domain)
	}
	resp, err = client.Get(fmt.Sprintf("https://127.0.0.1:%d/api/v1/version", tlsPort))
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "v2", strings.TrimSpace(string(body)))

	// Certificates and monitoring are part of snapshots, and come back
	// with rollback --components tls,monitoring.
	serial := func() string {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), &tls.Config{RootCAs: roots, ServerName: "a.lawsker.test"})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	store, err := OpenStore(t.Context(), cfg, &config.Resolver{})
	require.NoError(t, err)
	defer store.Close()
	snap, err := Snapshot(t.Context(), cfg, &config.Resolver{}, store, "with certificates")
	require.NoError(t, err)
	assert.Contains(t, snap.Components, snapshots.ComponentTLS)
	assert.Contains(t, snap.Components, snapshots.ComponentMonitoring)
	assert.Contains(t, snap.Warnings, "tls: private keys are stored unencrypted in the snapshot store; set snapshots.age_recipient to encrypt them")
	before := serial()
	rep, err := IssueCertificates(t.Context(), cfg, &config.Resolver{}, true, pebble.HTTPClient())
	require.NoError(t, err)
	assert.Equal(t, []string{"local"}, rep.Reloaded)
	require.Eventually(t, func() bool { return serial() != before }, 10*time.Second, 100*time.Millisecond, "renewed certificates serve after the reload")

	plan, err := PlanRestore(cfg, snap, []string{"tls", "monitoring"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "medium", plan.Risk)
	rs, err := PrepareRestore(t.Context(), RestoreRequest{Config: cfg, Resolver: &config.Resolver{}, Store: store.Store, Manifest: snap, Plan: plan,
		ID: report.NewID(time.Now()), Who: "tester@ci", WorkDir: t.TempDir(), Roots: roots})
	require.NoError(t, err)
	defer rs.Close()
	res := pipelines.Run(t.Context(), rs.Graph(), pipelines.Options{MaxWorkers: 2})
	out, err = rs.Finish(res)
	require.NoError(t, err, "%+v", out)
	assert.Equal(t, []snapshots.Component{"tls", "monitoring"}, out.RolledBack)
	require.Eventually(t, func() bool { return serial() == before }, 10*time.Second, 100*time.Millisecond, "the snapshot's certificate serves again")
}
