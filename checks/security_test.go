package checks

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

// tlsNginx serves HTTPS for app.test with a certificate from ca; returns
// the TLS address.
func tlsNginx(t *testing.T, ca *testenv.TestCA, validity time.Duration, protocols, extra string) string {
	dir := testenv.TempDir(t, "tls")
	cert, key := ca.WriteIssued(t, dir, "app", validity, "app.test")
	port := testenv.FreePort(t)
	testenv.StartNginx(t, fmt.Sprintf(`  server { listen 127.0.0.1:{{PORT}}; return 204; }
  server {
    listen 127.0.0.1:%d ssl;
    server_name app.test;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols %s;
    %s
    location / { add_header Strict-Transport-Security "max-age=63072000" always; return 200 "ok"; }
  }`, port, cert, key, protocols, extra))
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func TestTLSCheck(t *testing.T) {
	ca := testenv.NewTestCA(t)
	good := tlsNginx(t, ca, 90*24*time.Hour, "TLSv1.2 TLSv1.3", "")
	r := run1(t, Check{Name: "tls", Category: Security, Run: TLSCheck(good, "app.test", ca.Pool, nil)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Contains(t, r.Message, "issued by lawsker-deploy test CA")
	assert.Contains(t, r.Message, "offers TLS 1.2 and 1.3")

	old := tlsNginx(t, ca, 90*24*time.Hour, "TLSv1 TLSv1.1 TLSv1.2", "ssl_ciphers DEFAULT:@SECLEVEL=0;")
	r = run1(t, Check{Name: "tls", Category: Security, Run: TLSCheck(old, "app.test", ca.Pool, nil)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "TLS 1.0 is accepted; TLS 1.1 is accepted; TLS 1.3 is not offered")

	// A short-lived certificate a quarter through its life is in the
	// renewal window (a warning), not failing; a tenth is a failure.
	renew := tlsNginx(t, ca, 20*time.Minute, "TLSv1.2 TLSv1.3", "") // 80 min lifetime, 20 left
	r = run1(t, Check{Name: "tls", Category: Security, Run: TLSCheck(renew, "app.test", ca.Pool, nil)})
	assert.Equal(t, Warn, r.Status, r.Message)
	assert.Contains(t, r.Message, "in its renewal window: 25% of its lifetime left")
	ending := tlsNginx(t, ca, 5*time.Minute, "TLSv1.2 TLSv1.3", "")
	r = run1(t, Check{Name: "tls", Category: Security, Run: TLSCheck(ending, "app.test", ca.Pool, nil)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "of its 1h5m0s lifetime left")

	r = run1(t, Check{Name: "tls", Category: Security, Run: TLSCheck(good, "app.test", nil, nil)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "certificate signed by unknown authority")
	r = run1(t, Check{Name: "tls", Category: Security, Run: TLSCheck(good, "other.test", ca.Pool, nil)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "certificate is valid for app.test, not other.test")
}

func TestHeaderScore(t *testing.T) {
	good := http.Header{}
	good.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	good.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	good.Set("X-Content-Type-Options", "nosniff")
	good.Set("Referrer-Policy", "strict-origin-when-cross-origin")
	good.Add("Set-Cookie", "session=abc; Secure; HttpOnly; SameSite=Lax")
	score, why := HeaderScore(good, true)
	assert.Equal(t, 100, score, why)

	bad := http.Header{}
	bad.Set("Strict-Transport-Security", "max-age=86400")
	bad.Add("Set-Cookie", "session=abc")
	score, why = HeaderScore(bad, true)
	assert.Equal(t, 100-10-25-5-20-5-20-10-5, score)
	assert.Equal(t, []string{"-10 Strict-Transport-Security max-age 86400 is under six months", "-25 no Content-Security-Policy",
		"-5 no X-Content-Type-Options: nosniff", "-20 no frame protection (X-Frame-Options or CSP frame-ancestors)", "-5 no Referrer-Policy",
		"-20 a cookie without Secure", "-10 a cookie without HttpOnly", "-5 a cookie without SameSite"}, why)
}

func TestHeadersThroughNginx(t *testing.T) {
	with := testenv.StartNginx(t, `  server { listen 127.0.0.1:{{PORT}};
    add_header Content-Security-Policy "default-src 'self'; frame-ancestors 'none'" always;
    add_header X-Content-Type-Options nosniff always;
    add_header Referrer-Policy strict-origin-when-cross-origin always;
    location / { return 200 "ok"; } }`)
	without := testenv.StartNginx(t, `  server { listen 127.0.0.1:{{PORT}}; location / { return 200 "ok"; } }`)
	h := NewHTTP(2*time.Second, nil)
	r := run1(t, Check{Name: "headers", Category: Security, Run: Headers(h, fmt.Sprintf("http://127.0.0.1:%d/", with.Port), 70)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Contains(t, r.Message, "security headers score 100/100")
	r = run1(t, Check{Name: "headers", Category: Security, Run: Headers(h, fmt.Sprintf("http://127.0.0.1:%d/", without.Port), 70)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "security headers score 45/100 (-25 no Content-Security-Policy, -5 no X-Content-Type-Options: nosniff, -20 no frame protection (X-Frame-Options or CSP frame-ancestors), -5 no Referrer-Policy), under the 70 required")
}

func TestPortScan(t *testing.T) {
	rd := testenv.StartRedis(t)
	_, port, _ := splitHostPort(rd.Addr)
	closed := testenv.FreePort(t)
	r := run1(t, Check{Name: "ports", Category: Security, Run: Ports("127.0.0.1", []int{port, closed}, []int{22})})
	assert.Equal(t, Fail, r.Status)
	assert.Equal(t, fmt.Sprintf("127.0.0.1: ports open outside the allowlist [22]: %d (unknown)", port), r.Message)
	r = run1(t, Check{Name: "ports", Category: Security, Run: Ports("127.0.0.1", []int{port, closed}, []int{port})})
	assert.Equal(t, Pass, r.Status, r.Message)

	// A backend bound to loopback does not answer on the host's other
	// address (127.0.0.2 here); one bound to every interface does.
	loop, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer loop.Close()
	every, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	defer every.Close()
	lp, ep := loop.Addr().(*net.TCPAddr).Port, every.Addr().(*net.TCPAddr).Port
	r = run1(t, Check{Name: "ports", Category: Security, Run: Ports("127.0.0.2", nil, nil, lp)})
	assert.Equal(t, Pass, r.Status, r.Message)
	r = run1(t, Check{Name: "ports", Category: Security, Run: Ports("127.0.0.2", nil, nil, lp, ep)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, fmt.Sprintf("%d (the new backend, listening past nginx on every interface: bind it to 127.0.0.1", ep))
	r = run1(t, Check{Name: "ports", Category: Security, Run: Ports("127.0.0.1", nil, nil, lp, ep)})
	assert.Equal(t, Pass, r.Status, "on a loopback target the backend answers by design: %s", r.Message)
}

func TestFilePermissionsOverSSH(t *testing.T) {
	h := sshTarget(t)
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"r1/backend.env": 0o600, "r2/backend.env": 0o644, "tls/key.pem": 0o640} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("x"), mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	r := run1(t, Check{Name: "files", Category: Security, Run: FilePermissions(h.StatGlob, []string{dir + "/*/backend.env", dir + "/tls/*.pem"})})
	assert.Equal(t, Fail, r.Status)
	assert.Equal(t, fmt.Sprintf("readable by group or others: %s/r2/backend.env is 0644 (chmod 600), %s/tls/key.pem is 0640 (chmod 600)", dir, dir), r.Message)
	r = run1(t, Check{Name: "files", Category: Security, Run: FilePermissions(h.StatGlob, []string{dir + "/r1/*.env"})})
	assert.Equal(t, Pass, r.Status, r.Message)
	r = run1(t, Check{Name: "files", Category: Security, Run: FilePermissions(h.StatGlob, []string{dir + "/none/*"})})
	assert.Equal(t, Skip, r.Status)
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	return host, n, err
}
