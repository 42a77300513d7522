package testenv

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Pebble is a throwaway ACME CA (Let's Encrypt's test server).
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// Management is the management API (roots, intermediates, ...).
	Management string
	// CA is the test CA that signed Pebble's own HTTPS certificate; clients
	// of the ACME API trust it. Certificates Pebble issues chain to its own
	// roots (GET Management + "/roots/0").
	CA   *TestCA
	proc *Process
}

// PebbleOptions say where Pebble validates challenges.
type PebbleOptions struct {
	HTTPPort  int    // port HTTP-01 validation connects to (default 5002)
	TLSPort   int    // port TLS-ALPN-01 validation connects to (default 5001)
	DNSServer string // resolver for validation and DNS-01 (host:port), "" for the system one
	// Validity of the certificates issued (0: Pebble's default, years).
	Validity time.Duration
}

// StartPebble starts Pebble with its random sleeps and nonce rejections off.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	if opts.HTTPPort == 0 {
		opts.HTTPPort = 5002
	}
	if opts.TLSPort == 0 {
		opts.TLSPort = 5001
	}
	dir := TempDir(t, "pebble")
	ca := NewTestCA(t)
	certPath, keyPath := ca.WriteIssued(t, dir, "pebble", 24*time.Hour, "127.0.0.1", "localhost")
	listen, mgmt := fmt.Sprintf("127.0.0.1:%d", FreePort(t)), fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	pc := map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt, "certificate": certPath, "privateKey": keyPath,
		"httpPort": opts.HTTPPort, "tlsPort": opts.TLSPort, "ocspResponderURL": "", "externalAccountBindingRequired": false,
	}
	if opts.Validity > 0 {
		pc["profiles"] = map[string]any{"default": map[string]any{"description": "test", "validityPeriod": uint64(opts.Validity.Seconds())}}
	}
	cfg, err := json.Marshal(map[string]any{"pebble": pc})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cfgPath := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgPath, string(cfg), 0o644)
	args := []string{"-config", cfgPath}
	if opts.DNSServer != "" {
		args = append(args, "-dnsserver", opts.DNSServer)
	}
	cmd := exec.Command(Bin(t, "pebble"), args...)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p := &Pebble{Directory: "https://" + listen + "/dir", Management: "https://" + mgmt, CA: ca}
	p.proc = Start(t, "pebble", cmd)
	client := p.HTTPClient()
	p.proc.WaitFor(t, 20*time.Second, "serving the ACME directory", func(ctx context.Context) error {
		return httpStatus(ctx, client, p.Directory, http.StatusOK)
	})
	return p
}

// HTTPClient trusts Pebble's HTTPS certificate.
func (p *Pebble) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: p.CA.ClientConfig()}}
}

// Roots returns the pool of Pebble's issuing roots (certificates it issues
// chain to them).
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.HTTPClient().Get(p.Management + "/roots/0")
	if err != nil {
		t.Fatalf("testenv: pebble roots: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testenv: pebble roots: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("testenv: pebble roots: no PEM in %q", data)
	}
	return pool
}
