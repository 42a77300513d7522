package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestTLSCommands(t *testing.T) {
	s := testenv.StartSSHD(t)
	dns := testenv.StartChallTestSrv(t)
	root := testenv.TempDir(t, "srv")
	webroot := filepath.Join(root, "web", "acme")
	require.NoError(t, os.MkdirAll(webroot, 0o755))
	n := testenv.StartNginx(t, fmt.Sprintf("  server { listen 127.0.0.1:{{PORT}}; location ^~ /.well-known/acme-challenge/ { root %s; } }", webroot))
	pebble := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: n.Port, DNSServer: dns.DNS})
	dns.AddA(t, "www.lawsker.test", "127.0.0.1")
	dir := t.TempDir()
	bundle := filepath.Join(dir, "acme-ca.pem")
	require.NoError(t, os.WriteFile(bundle, pebble.CA.CertPEM, 0o644))
	write := func(domain string) string {
		cfg := filepath.Join(dir, domain+".json")
		require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"version": 1, "app": "web",
		  "targets": [{"name": "local", "host": "127.0.0.1", "root": %q,
		    "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q}}],
		  "backend": {"image": "127.0.0.1:5000/web"}, "domains": [%q],
		  "tls": {"enabled": true, "email": "ops@lawsker.test", "acme_directory": %q, "resolver": %q, "acme_ca_bundle": %q}}`,
			root, s.User, s.Port, s.KeyPath, s.KnownHosts, domain, pebble.Directory, dns.DNS, bundle)), 0o644))
		return cfg
	}
	cfg := write("www.lawsker.test")
	r := runIn(t, dir, nil, "tls", "status", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "www.lawsker.test  -")
	assert.Contains(t, r.stdout, "no certificate yet")

	r = runIn(t, dir, nil, "tls", "issue", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "www.lawsker.test: issued (valid until ")
	r = runIn(t, dir, nil, "tls", "renew", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "www.lawsker.test: kept")
	r = runIn(t, dir, nil, "tls", "status", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Pebble Intermediate CA")
	assert.Contains(t, r.stdout, "  ok\n")

	r = runIn(t, dir, nil, "tls", "issue", "--config", write("nowhere.lawsker.test"))
	assert.Equal(t, exitFailed, r.code)
	assert.Contains(t, r.stderr, "domains: nowhere.lawsker.test does not resolve")
	r = runIn(t, dir, nil, "tls", "expire", "--config", cfg)
	assert.Equal(t, exitUsage, r.code)
}
