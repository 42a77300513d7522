package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TLSCheck connects to addr for serverName and judges the certificate
// chain (against roots; nil: the system's), the protocol versions (1.0 and
// 1.1 must be refused, 1.2 and 1.3 offered) and expiry as a fraction of
// the certificate's lifetime (warning under a third left, the renewal
// window; failure under a tenth), so 6-day and 90-day certificates are
// judged alike.
func TLSCheck(addr, serverName string, roots *x509.CertPool, route *Route) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		hs := func(minV, maxV uint16, verify bool) (*tls.ConnectionState, error) {
			raw, err := route.DialContext(ctx, "tcp", addr, 5*time.Second)
			if err != nil {
				return nil, err
			}
			defer raw.Close()
			c := tls.Client(raw, &tls.Config{
				ServerName: serverName, RootCAs: roots, MinVersion: minV, MaxVersion: maxV, InsecureSkipVerify: !verify, //nolint:gosec // protocol probes only
			})
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.HandshakeContext(hctx); err != nil {
				return nil, err
			}
			st := c.ConnectionState()
			return &st, nil
		}
		st, err := hs(tls.VersionTLS12, tls.VersionTLS13, true)
		if err != nil {
			return Result{}, fmt.Errorf("TLS to %s (%s): %w", addr, serverName, err)
		}
		leaf := st.PeerCertificates[0]
		var problems, warnings []string
		for _, v := range []struct {
			ver  uint16
			name string
		}{{tls.VersionTLS10, "1.0"}, {tls.VersionTLS11, "1.1"}} {
			if _, err := hs(v.ver, v.ver, false); err == nil {
				problems = append(problems, "TLS "+v.name+" is accepted")
			}
		}
		offered := []string{}
		for _, v := range []struct {
			ver  uint16
			name string
		}{{tls.VersionTLS12, "1.2"}, {tls.VersionTLS13, "1.3"}} {
			if _, err := hs(v.ver, v.ver, false); err == nil {
				offered = append(offered, v.name)
			} else {
				warnings = append(warnings, "TLS "+v.name+" is not offered")
			}
		}
		now := time.Now()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		left := leaf.NotAfter.Sub(now)
		frac := left.Seconds() / life.Seconds()
		switch {
		case frac < 0.10:
			problems = append(problems, fmt.Sprintf("the certificate expires %s (%.0f%% of its %s lifetime left)", leaf.NotAfter.UTC().Format(time.RFC3339), 100*frac, life.Round(time.Minute)))
		case frac < 1.0/3:
			warnings = append(warnings, fmt.Sprintf("the certificate is in its renewal window: %.0f%% of its lifetime left, expires %s", 100*frac, leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
		summary := fmt.Sprintf("%s: %s, issued by %s, expires %s (%.0f%% of its lifetime left), offers TLS %s",
			serverName, strings.Join(leaf.DNSNames, ","), leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format("2006-01-02"), 100*frac, strings.Join(offered, " and "))
		r := Passed("%s", summary)
		switch {
		case len(problems) > 0:
			r = Failed("%s: %s", serverName, strings.Join(append(problems, warnings...), "; "))
		case len(warnings) > 0:
			r = Warned("%s; %s", summary, strings.Join(warnings, "; "))
		}
		return r.With("expires", leaf.NotAfter.UTC().Format(time.RFC3339), "lifetime_left", frac, "issuer", leaf.Issuer.CommonName), nil
	}
}

// HeaderScore scores a response's security headers out of 100 in the
// manner of the Mozilla Observatory: each missing or weak protection takes
// points off (the list is in the result). HSTS counts only over HTTPS.
func HeaderScore(header http.Header, https bool) (int, []string) {
	score := 100
	var why []string
	take := func(n int, reason string) { score -= n; why = append(why, fmt.Sprintf("-%d %s", n, reason)) }
	if https {
		hsts := header.Get("Strict-Transport-Security")
		switch age := maxAge(hsts); {
		case hsts == "":
			take(20, "no Strict-Transport-Security")
		case age < 15768000:
			take(10, fmt.Sprintf("Strict-Transport-Security max-age %d is under six months", age))
		}
	}
	csp := header.Get("Content-Security-Policy")
	switch {
	case csp == "":
		take(25, "no Content-Security-Policy")
	case strings.Contains(csp, "'unsafe-inline'") && !strings.Contains(csp, "nonce-") && !strings.Contains(csp, "sha256-"):
		take(10, "Content-Security-Policy allows 'unsafe-inline'")
	}
	if !strings.EqualFold(strings.TrimSpace(header.Get("X-Content-Type-Options")), "nosniff") {
		take(5, "no X-Content-Type-Options: nosniff")
	}
	xfo := strings.ToUpper(header.Get("X-Frame-Options"))
	if xfo != "DENY" && xfo != "SAMEORIGIN" && !strings.Contains(csp, "frame-ancestors") {
		take(20, "no frame protection (X-Frame-Options or CSP frame-ancestors)")
	}
	switch rp := strings.ToLower(header.Get("Referrer-Policy")); rp {
	case "":
		take(5, "no Referrer-Policy")
	case "unsafe-url", "no-referrer-when-downgrade":
		take(5, "Referrer-Policy "+rp+" leaks full URLs")
	}
	var noSecure, noHTTPOnly, noSameSite bool
	for _, c := range (&http.Response{Header: header}).Cookies() {
		noSecure = noSecure || (https && !c.Secure)
		noHTTPOnly = noHTTPOnly || !c.HttpOnly
		noSameSite = noSameSite || c.SameSite == 0 || c.SameSite == http.SameSiteDefaultMode
	}
	if noSecure {
		take(20, "a cookie without Secure")
	}
	if noHTTPOnly {
		take(10, "a cookie without HttpOnly")
	}
	if noSameSite {
		take(5, "a cookie without SameSite")
	}
	return max(score, 0), why
}

func maxAge(hsts string) int {
	for _, part := range strings.Split(hsts, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.ToLower(part)), "max-age="); ok {
			n, _ := strconv.Atoi(strings.Trim(v, `"`))
			return n
		}
	}
	return 0
}

// Headers GETs url and fails when the score is under min.
func Headers(h *HTTP, url string, min int) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		resp, err := h.Get(ctx, url)
		if err != nil {
			return Result{}, err
		}
		score, why := HeaderScore(resp.Header, strings.HasPrefix(url, "https://"))
		msg := fmt.Sprintf("%s: security headers score %d/100", url, score)
		if len(why) > 0 {
			msg += " (" + strings.Join(why, ", ") + ")"
		}
		if score < min {
			return Failed("%s, under the %d required", msg, min).With("score", score), nil
		}
		return Passed("%s", msg).With("score", score), nil
	}
}

// wellKnown names ports a scan may find.
var wellKnown = map[int]string{21: "FTP", 22: "SSH", 23: "telnet", 25: "SMTP", 80: "HTTP", 443: "HTTPS", 2375: "Docker API", 2376: "Docker API (TLS)",
	3000: "Grafana", 3306: "MySQL", 5432: "PostgreSQL", 6379: "Redis", 8000: "backend", 8080: "HTTP alt", 9090: "Prometheus", 9100: "node exporter",
	11211: "memcached", 27017: "MongoDB"}

// DefaultScanPorts is what Ports scans when the configuration lists none.
var DefaultScanPorts = []int{21, 22, 23, 25, 80, 443, 2375, 2376, 3000, 3306, 5432, 6379, 8000, 8080, 9090, 9100, 11211, 27017}

// Ports connects to each port of host (bounded: 16 at once, 1 s each) and
// fails when one answers that the allowlist does not name; PostgreSQL and
// Redis answering is called out. backend are the new release's own ports
// (its port and extra_ports), which must answer on 127.0.0.1 only: on any
// other address of the host, one that answers means the backend listens on
// every interface, past nginx.
func Ports(host string, scan, allow []int, backend ...int) func(context.Context) (Result, error) {
	if ip := net.ParseIP(host); host == "localhost" || ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback) {
		backend = nil // the address backends are bound to: they answer there by design
	}
	ownPort := map[int]bool{}
	for _, p := range backend {
		ownPort[p] = true
		if !slices.Contains(scan, p) {
			scan = append(slices.Clone(scan), p)
		}
	}
	return func(ctx context.Context) (Result, error) {
		allowed := map[int]bool{}
		for _, p := range allow {
			allowed[p] = true
		}
		var mu sync.Mutex
		var open []int
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for _, p := range scan {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				d := net.Dialer{Timeout: time.Second}
				c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
				if err == nil {
					c.Close()
					mu.Lock()
					open = append(open, p)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		sort.Ints(open)
		var bad []string
		for _, p := range open {
			if ownPort[p] {
				bad = append(bad, fmt.Sprintf("%d (the new backend, listening past nginx on every interface: bind it to 127.0.0.1, e.g. \"127.0.0.1:{port}\" in backend.env)", p))
				continue
			}
			if !allowed[p] {
				name := wellKnown[p]
				if name == "" {
					name = "unknown"
				}
				bad = append(bad, fmt.Sprintf("%d (%s)", p, name))
			}
		}
		if len(bad) > 0 {
			msg := fmt.Sprintf("%s: ports open outside the allowlist %v: %s", host, allow, strings.Join(bad, ", "))
			if hasAny(open, 5432, 6379) {
				msg += "; PostgreSQL and Redis must not answer on public interfaces (bind them to 127.0.0.1 or a private network)"
			}
			return Failed("%s", msg).With("open", open), nil
		}
		return Passed("%s: %d ports scanned, open: %v, all allowed", host, len(scan), open).With("open", open), nil
	}
}

func hasAny(xs []int, want ...int) bool {
	for _, x := range xs {
		for _, w := range want {
			if x == w {
				return true
			}
		}
	}
	return false
}

// StatFunc returns the mode of files matching a pattern on the target
// (target.Host's SFTP in production).
type StatFunc func(pattern string) (map[string]os.FileMode, error)

// FilePermissions fails when a matching file (env files, private keys,
// certificate keys) is readable or writable by group or others.
func FilePermissions(stat StatFunc, patterns []string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		var bad []string
		n := 0
		for _, pat := range patterns {
			files, err := stat(pat)
			if err != nil {
				return Result{}, fmt.Errorf("%s: %w", pat, err)
			}
			names := make([]string, 0, len(files))
			for f := range files {
				names = append(names, f)
			}
			sort.Strings(names)
			for _, f := range names {
				n++
				if mode := files[f]; mode.Perm()&0o077 != 0 {
					bad = append(bad, fmt.Sprintf("%s is %04o (chmod 600)", f, mode.Perm()))
				}
			}
		}
		if len(bad) > 0 {
			return Failed("readable by group or others: %s", strings.Join(bad, ", ")), nil
		}
		if n == 0 {
			return Skipped("no file matches %v", patterns), nil
		}
		return Passed("%d sensitive files, none readable by group or others", n), nil
	}
}
