package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// rig: a target (sshd) whose nginx serves the ACME webroot on the port
// Pebble validates HTTP-01 on, names resolved by pebble-challtestsrv.
type rig struct {
	pebble *testenv.Pebble
	dns    *testenv.ChallTestSrv
	host   *remote.Host
	base   string
}

func newRig(t testing.TB, validity time.Duration) *rig {
	dns := testenv.StartChallTestSrv(t)
	base := testenv.TempDir(t, "srv")
	require.NoError(t, os.MkdirAll(filepath.Join(base, "acme"), 0o755))
	n := testenv.StartNginx(t, fmt.Sprintf(`  server {
    listen 127.0.0.1:{{PORT}};
    location ^~ /.well-known/acme-challenge/ { root %s; default_type text/plain; }
    location / { return 404; }
  }`, filepath.Join(base, "acme")))
	p := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: n.Port, DNSServer: dns.DNS, Validity: validity})
	s := testenv.StartSSHD(t)
	key, err := os.ReadFile(s.KeyPath)
	require.NoError(t, err)
	h, err := remote.Connect(t.Context(), remote.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts}, 1)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return &rig{pebble: p, dns: dns, host: h, base: base}
}

func (r *rig) config(t testing.TB, domains []string, extra string) *config.Config {
	js := fmt.Sprintf(`{"version": 1, "app": "web", "targets": [{"name": "local", "host": "127.0.0.1"}],
	  "backend": {"image": "127.0.0.1:5000/web"}, "domains": %s,
	  "tls": {"enabled": true, "email": "ops@lawsker.test", "acme_directory": %q, "resolver": %q%s}}`,
		mustJSON(domains), r.pebble.Directory, r.dns.DNS, extra)
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func mustJSON(v []string) string {
	out := "["
	for i, s := range v {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf("%q", s)
	}
	return out + "]"
}

func (r *rig) manager(t testing.TB, cfg *config.Config, res *config.Resolver) *Manager {
	m, err := New(cfg, res, []Target{{Name: "local", Host: r.host, Base: r.base}})
	require.NoError(t, err)
	m.HTTPClient = r.pebble.HTTPClient()
	return m
}

func (r *rig) leaf(t testing.TB, domain string) *x509.Certificate {
	data, err := os.ReadFile(CertPath(r.base, domain))
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

func TestHTTP01IssueKeepRenewAndStatus(t *testing.T) {
	r := newRig(t, 6*24*time.Hour)
	domains := []string{"a.lawsker.test", "b.lawsker.test", "c.lawsker.test"}
	for _, d := range domains {
		r.dns.AddA(t, d, "127.0.0.1")
	}
	cfg := r.config(t, domains, "")
	m := r.manager(t, cfg, &config.Resolver{})
	res, err := m.Issue(t.Context(), false)
	require.NoError(t, err)
	require.Len(t, res, 3)
	roots := r.pebble.Roots(t)
	for i, d := range domains {
		assert.Equal(t, "issued", res[i].Action, d)
		c := r.leaf(t, d)
		_, err := c.Verify(x509.VerifyOptions{DNSName: d, Roots: roots, Intermediates: intermediates(t, r.base, d)})
		assert.NoError(t, err, "%s chains to Pebble's root", d)
		st, err := os.Stat(KeyPath(r.base, d))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "private key mode")
		assert.InDelta(t, 6*24*time.Hour, c.NotAfter.Sub(c.NotBefore), float64(time.Hour))
	}
	prom, err := os.ReadFile(TextfilePath(r.base))
	require.NoError(t, err)
	assert.Contains(t, string(prom), fmt.Sprintf(`lawsker_certificate_expiry_timestamp_seconds{domain="a.lawsker.test"} %d`, r.leaf(t, "a.lawsker.test").NotAfter.Unix()))
	acctKey, err := os.ReadFile(filepath.Join(r.base, "tls", "account", "key.pem"))
	require.NoError(t, err)

	// Again: nothing is due, nothing changes; the account is reused.
	m2 := r.manager(t, cfg, &config.Resolver{})
	res, err = m2.Issue(t.Context(), false)
	require.NoError(t, err)
	for _, x := range res {
		assert.Equal(t, "kept", x.Action)
	}
	st := m2.Status()
	require.Len(t, st, 3)
	assert.Equal(t, 5, st[0].DaysLeft)
	assert.False(t, st[0].Due)
	assert.Equal(t, "", st[0].Error)
	assert.False(t, st[0].Stapling, "Pebble names no OCSP responder")

	// Four and a half days later a third of the lifetime is left: renewed.
	before := r.leaf(t, "a.lawsker.test")
	later := before.NotBefore.Add(4*24*time.Hour + 12*time.Hour)
	m2.Now = func() time.Time { return later }
	assert.True(t, m2.Status()[0].Due)
	res, err = m2.Issue(t.Context(), false)
	require.NoError(t, err)
	assert.Equal(t, "renewed", res[0].Action)
	assert.NotEqual(t, before.SerialNumber, r.leaf(t, "a.lawsker.test").SerialNumber)
	again, err := os.ReadFile(filepath.Join(r.base, "tls", "account", "key.pem"))
	require.NoError(t, err)
	assert.Equal(t, acctKey, again, "the account key is kept and reused")

	// A renewal that fails (the ACME server is down) keeps the serving
	// certificate and says why.
	down := r.config(t, domains, "")
	down.TLS.ACMEDirectory = fmt.Sprintf("https://127.0.0.1:%d/dir", testenv.FreePort(t))
	m3 := r.manager(t, down, &config.Resolver{})
	m3.Now = func() time.Time { return later.Add(12 * time.Hour) }
	serving := r.leaf(t, "b.lawsker.test")
	res, err = m3.Issue(t.Context(), false)
	require.NoError(t, err, "every domain still has a valid certificate")
	assert.Equal(t, "failed", res[1].Action)
	assert.Contains(t, res[1].Error, "the ACME server cannot be reached")
	assert.Contains(t, res[1].Error, "the current certificate keeps serving until")
	assert.Equal(t, serving.SerialNumber, r.leaf(t, "b.lawsker.test").SerialNumber)
}

func intermediates(t testing.TB, base, domain string) *x509.CertPool {
	data, err := os.ReadFile(CertPath(base, domain))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		pool.AddCert(c)
	}
	return pool
}

func TestDNSCheckRefusesBeforeAnyACMECall(t *testing.T) {
	r := newRig(t, 0)
	r.dns.AddA(t, "ok.lawsker.test", "127.0.0.1")
	r.dns.AddA(t, "elsewhere.lawsker.test", "10.1.2.3")
	cfg := r.config(t, []string{"ok.lawsker.test", "missing.lawsker.test", "elsewhere.lawsker.test"}, "")
	// An ACME server that does not answer: the DNS check must fail first.
	cfg.TLS.ACMEDirectory = fmt.Sprintf("https://127.0.0.1:%d/dir", testenv.FreePort(t))
	_, err := r.manager(t, cfg, &config.Resolver{}).Issue(t.Context(), false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "domains: missing.lawsker.test does not resolve")
	assert.Contains(t, err.Error(), "domains: elsewhere.lawsker.test resolves to 10.1.2.3, not to a target (127.0.0.1)")
	assert.NotContains(t, err.Error(), "ok.lawsker.test")
	assert.NotContains(t, err.Error(), "cannot be reached", "no ACME call was made")
	_, statErr := os.Stat(filepath.Join(r.base, "tls", "account"))
	assert.True(t, os.IsNotExist(statErr), "no account was made")

	_, err = config.Parse([]byte(`{"version": 1, "app": "web", "targets": [{"name": "a", "host": "127.0.0.1"}], "backend": {"image": "r/web"},
	  "domains": ["*.lawsker.test"], "tls": {"enabled": true, "email": "ops@lawsker.test"}}`), config.ImportOptions{})
	assert.ErrorContains(t, err, `wildcard "*.lawsker.test" needs tls.challenge "dns-01"`)
}

func TestDNS01WildcardThroughALegoProvider(t *testing.T) {
	r := newRig(t, 0)
	hook := testenv.BuildStatic(t, "./testenv/testdata/challtxt", "challtxt")
	t.Setenv("CHALLTESTSRV", r.dns.Management)
	t.Setenv("EXEC_PROPAGATION_TIMEOUT", "30")
	t.Setenv("EXEC_POLLING_INTERVAL", "1")
	cfg := r.config(t, []string{"*.wild.lawsker.test"}, `, "challenge": "dns-01", "dns_provider": "exec", "dns_credentials": {"EXEC_PATH": "env:HOOK"}`)
	res := &config.Resolver{LookupEnv: func(k string) (string, bool) { return hook, k == "HOOK" }}
	out, err := r.manager(t, cfg, res).Issue(t.Context(), false)
	require.NoError(t, err)
	assert.Equal(t, "issued", out[0].Action)
	c := r.leaf(t, "*.wild.lawsker.test")
	assert.Equal(t, []string{"*.wild.lawsker.test"}, c.DNSNames)
	_, err = c.Verify(x509.VerifyOptions{DNSName: "app.wild.lawsker.test", Roots: r.pebble.Roots(t), Intermediates: intermediates(t, r.base, "*.wild.lawsker.test")})
	assert.NoError(t, err)

	bad := r.config(t, []string{"*.wild.lawsker.test"}, `, "challenge": "dns-01", "dns_provider": "godaddy-ish"`)
	out, err = r.manager(t, bad, res).Issue(t.Context(), true)
	require.NoError(t, err, "the serving certificate is still valid")
	assert.Equal(t, "failed", out[0].Action)
	assert.Contains(t, out[0].Error, `tls.dns_provider "godaddy-ish" is not built in (cloudflare, digitalocean, exec, gcloud, hetzner, httpreq, rfc2136, route53)`)
}
