// Package certs obtains, renews and installs TLS certificates with lego
// (github.com/go-acme/lego/v4): every domain is checked to resolve to a
// target before any ACME call; HTTP-01 tokens are served by nginx from a
// webroot on the targets (written over SFTP), or DNS-01 goes through a lego
// DNS provider whose credentials are secrets. The ACME account key is kept
// on the first target and reused. Certificates are renewed when less than a
// third of their lifetime is left; a renewal that fails leaves the serving
// certificate in place.
package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	legolog "github.com/go-acme/lego/v4/log"
	"github.com/go-acme/lego/v4/registration"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// SetLogOutput sends lego's progress lines to w (they go nowhere by
// default: a CLI's terminal shows the steps, its log file the detail).
func SetLogOutput(w io.Writer) { legolog.Logger = stdlog.New(w, "lego: ", stdlog.LstdFlags) }

func init() { SetLogOutput(io.Discard) }

// StagingDirectory is Let's Encrypt's staging ACME directory.
const StagingDirectory = "https://acme-staging-v02.api.letsencrypt.org/directory"

// Target is one host the certificates are installed on, with its folder
// (<root>/<app>).
type Target struct {
	Name string
	Host *remote.Host
	Base string
}

// Webroot is where HTTP-01 tokens go on a target; nginx serves
// /.well-known/acme-challenge/ from it.
func Webroot(base string) string { return path.Join(base, "acme") }

// Dir is where a domain's certificate lives on a target.
func Dir(base, domain string) string {
	return path.Join(base, "tls", strings.Replace(domain, "*", "_wildcard", 1))
}

// CertPath and KeyPath are the files nginx reads.
func CertPath(base, domain string) string { return path.Join(Dir(base, domain), "fullchain.pem") }

// KeyPath is the private key (mode 0600).
func KeyPath(base, domain string) string { return path.Join(Dir(base, domain), "privkey.pem") }

// Manager issues, renews and reports certificates for a configuration.
type Manager struct {
	cfg     *config.Config
	res     *config.Resolver
	targets []Target
	// Now is the clock renewal decisions use (tests move it).
	Now func() time.Time
	// HTTPClient reaches the ACME server (nil: one trusting the system
	// roots and tls.acme_ca_bundle).
	HTTPClient *http.Client

	mu     sync.Mutex
	client *lego.Client
	// inACME is the time spent inside lego's Obtain (the ACME exchange,
	// the challenge included): the rest of Issue is this package's own.
	inACME time.Duration
}

// ACMETime is the time Issue spent inside lego's Obtain calls.
func (m *Manager) ACMETime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inACME
}

// New returns a manager; the first target keeps the ACME account.
func New(cfg *config.Config, res *config.Resolver, targets []Target) (*Manager, error) {
	if len(targets) == 0 {
		return nil, errors.New("certificates need at least one target")
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("domains: list the domains to obtain certificates for")
	}
	for _, d := range cfg.Domains {
		if strings.HasPrefix(d, "*.") && cfg.TLS.Challenge != "dns-01" {
			return nil, fmt.Errorf("domains: wildcard %s needs tls.challenge \"dns-01\" (HTTP-01 cannot validate wildcards)", d)
		}
	}
	return &Manager{cfg: cfg, res: res, targets: targets, Now: time.Now}, nil
}

// Directory is the ACME directory URL in use.
func (m *Manager) Directory() string {
	if m.cfg.TLS.Staging {
		return StagingDirectory
	}
	return m.cfg.TLS.ACMEDirectory
}

// DueAt is when a certificate is renewed: once less than a third of its
// lifetime is left (so 6-day certificates renew after 4 days, 90-day ones
// after 60).
func DueAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-life / 3)
}

// Status is what `tls status` shows for one domain.
type Status struct {
	Domain   string    `json:"domain"`
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	DaysLeft int       `json:"days_left"`
	RenewAt  time.Time `json:"renew_at,omitzero"`
	Due      bool      `json:"due"`
	Stapling bool      `json:"ocsp_stapling"` // the certificate names an OCSP responder
	Error    string    `json:"error,omitempty"`
}

// Read loads a domain's installed certificate from the first target (nil
// when there is none).
func (m *Manager) Read(domain string) (*x509.Certificate, error) {
	return ReadInstalled(m.targets[0].Host, m.targets[0].Base, domain)
}

// ReadInstalled loads a domain's certificate from a target (nil when there
// is none).
func ReadInstalled(h *remote.Host, base, domain string) (*x509.Certificate, error) {
	data, err := h.ReadFile(CertPath(base, domain))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", CertPath(base, domain))
	}
	return x509.ParseCertificate(block.Bytes)
}

// Status reports every domain's certificate.
func (m *Manager) Status() []Status {
	var out []Status
	now := m.Now()
	for _, d := range m.cfg.Domains {
		s := Status{Domain: d}
		c, err := m.Read(d)
		switch {
		case err != nil:
			s.Error = err.Error()
		case c == nil:
			s.Error, s.Due = "no certificate yet", true
		default:
			s.Issuer, s.NotAfter, s.RenewAt = c.Issuer.CommonName, c.NotAfter, DueAt(c)
			s.DaysLeft = int(c.NotAfter.Sub(now).Hours() / 24)
			s.Due = !now.Before(s.RenewAt)
			s.Stapling = len(c.OCSPServer) > 0
			if now.After(c.NotAfter) {
				s.Error = "expired"
			}
		}
		out = append(out, s)
	}
	return out
}

// Result is what Issue did for one domain.
type Result struct {
	Domain   string    `json:"domain"`
	Action   string    `json:"action"` // issued, renewed, kept, failed
	NotAfter time.Time `json:"not_after,omitzero"`
	Issuer   string    `json:"issuer,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Issue obtains a certificate for every domain without one, renews those
// due (or all with force) and installs them on every target. DNS is checked
// first: a domain that does not resolve to a target stops everything
// before any ACME call. A failed renewal keeps the serving certificate and
// is reported in its Result; the error lists every domain that has no
// valid certificate.
func (m *Manager) Issue(ctx context.Context, force bool) ([]Result, error) {
	if err := m.CheckDNS(ctx); err != nil {
		return nil, err
	}
	var out []Result
	var errs []error
	now := m.Now()
	for _, d := range m.cfg.Domains {
		cur, err := m.Read(d)
		if err != nil {
			cur = nil // unreadable: replace it
		}
		if cur != nil && !force && now.Before(DueAt(cur)) && now.Before(cur.NotAfter) {
			out = append(out, Result{Domain: d, Action: "kept", NotAfter: cur.NotAfter, Issuer: cur.Issuer.CommonName})
			continue
		}
		res, err := m.obtain(ctx, d)
		if err != nil {
			r := Result{Domain: d, Action: "failed", Error: err.Error()}
			if cur != nil && now.Before(cur.NotAfter) {
				r.Error += fmt.Sprintf(" (the current certificate keeps serving until %s)", cur.NotAfter.Format(time.RFC3339))
				r.NotAfter = cur.NotAfter
			} else {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
			}
			out = append(out, r)
			continue
		}
		action := "issued"
		if cur != nil {
			action = "renewed"
		}
		out = append(out, Result{Domain: d, Action: action, NotAfter: res.NotAfter, Issuer: res.Issuer.CommonName})
	}
	if err := m.writeExpiryMetrics(); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// TextfilePath is where the certificates' expiry is written for
// node_exporter's textfile collector (--collector.textfile.directory=<its
// folder>); the CertificateExpiringSoon alert reads it.
func TextfilePath(base string) string {
	return path.Join(base, "monitoring", "textfile", "lawsker_tls.prom")
}

// writeExpiryMetrics writes every installed certificate's expiry on every
// target, as lawsker_certificate_expiry_timestamp_seconds{domain}.
func (m *Manager) writeExpiryMetrics() error {
	var b strings.Builder
	b.WriteString("# HELP lawsker_certificate_expiry_timestamp_seconds When the certificate of a domain expires.\n# TYPE lawsker_certificate_expiry_timestamp_seconds gauge\n")
	for _, d := range m.cfg.Domains {
		if c, err := m.Read(d); err == nil && c != nil {
			fmt.Fprintf(&b, "lawsker_certificate_expiry_timestamp_seconds{domain=%q} %d\n", d, c.NotAfter.Unix())
		}
	}
	for _, t := range m.targets {
		if err := t.Host.WriteFile(TextfilePath(t.Base), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("%s: the certificate expiry metrics: %w", t.Name, err)
		}
	}
	return nil
}

// obtain gets one certificate and installs it on every target (key 0600,
// chain 0644, each written atomically; the key first).
func (m *Manager) obtain(ctx context.Context, domain string) (*x509.Certificate, error) {
	client, err := m.legoClient(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := client.Certificate.Obtain(certificate.ObtainRequest{Domains: []string{domain}, Bundle: true})
	m.mu.Lock()
	m.inACME += time.Since(start)
	m.mu.Unlock()
	if err != nil {
		return nil, explainACME(err)
	}
	block, _ := pem.Decode(res.Certificate)
	if block == nil {
		return nil, errors.New("the ACME server returned no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	for _, t := range m.targets {
		if err := t.Host.MkdirPrivate(Dir(t.Base, domain)); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		if err := t.Host.WriteFile(KeyPath(t.Base, domain), res.PrivateKey, 0o600); err != nil {
			return nil, fmt.Errorf("%s: installing the key: %w", t.Name, err)
		}
		if err := t.Host.WriteFile(CertPath(t.Base, domain), res.Certificate, 0o644); err != nil {
			return nil, fmt.Errorf("%s: installing the certificate: %w", t.Name, err)
		}
	}
	return leaf, nil
}

// explainACME turns rate limits and an unreachable server into advice.
func explainACME(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "rateLimited") || strings.Contains(msg, "429"):
		return fmt.Errorf("the ACME server rate-limits this account or domain: retry after the window its message names (Let's Encrypt: usually an hour; use tls.staging for tests): %w", err)
	case strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") || strings.Contains(msg, "i/o timeout"):
		return fmt.Errorf("the ACME server cannot be reached (tls.acme_directory); the current certificates keep serving, retry when it answers: %w", err)
	}
	return err
}

// CheckDNS resolves every domain (with tls.resolver when set) and refuses
// those that do not point at a target, naming the addresses found.
// Wildcards are checked through their base domain's DNS-01 record, not
// here.
func (m *Manager) CheckDNS(ctx context.Context) error {
	r := resolver(m.cfg.TLS.Resolver)
	want := map[string]bool{}
	for _, t := range m.cfg.Targets {
		ips, err := lookup(ctx, r, t.Host)
		if err != nil {
			return fmt.Errorf("targets: %s does not resolve: %w", t.Host, err)
		}
		for _, ip := range ips {
			want[ip] = true
		}
	}
	var errs []error
	for _, d := range m.cfg.Domains {
		if strings.HasPrefix(d, "*.") {
			continue
		}
		ips, err := lookup(ctx, r, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("domains: %s does not resolve (%v): point its A/AAAA record at a target before asking for a certificate", d, err))
			continue
		}
		if !slices.ContainsFunc(ips, func(ip string) bool { return want[ip] }) {
			errs = append(errs, fmt.Errorf("domains: %s resolves to %s, not to a target (%s): the ACME server would validate another host", d, strings.Join(ips, ", "), strings.Join(keys(want), ", ")))
		}
	}
	return errors.Join(errs...)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func resolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

func lookup(ctx context.Context, r *net.Resolver, host string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IP.String())
	}
	return out, nil
}

// legoClient registers (or reuses) the ACME account and sets up the
// challenge. The account key lives on the first target under tls/account.
func (m *Manager) legoClient(ctx context.Context) (*lego.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client != nil {
		return m.client, nil
	}
	first := m.targets[0]
	acct, err := loadAccount(first, m.Directory(), m.cfg.TLS.Email)
	if err != nil {
		return nil, err
	}
	lc := lego.NewConfig(acct)
	lc.CADirURL = m.Directory()
	lc.UserAgent = "lawsker-deploy"
	lc.Certificate.KeyType = certcrypto.EC256
	if m.HTTPClient != nil {
		lc.HTTPClient = m.HTTPClient
	} else if bundle := m.cfg.TLS.ACMECABundle; bundle != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pemData, err := os.ReadFile(bundle)
		if err != nil {
			return nil, fmt.Errorf("tls.acme_ca_bundle: %w", err)
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("tls.acme_ca_bundle %s: no PEM certificate in it", bundle)
		}
		lc.HTTPClient = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	client, err := lego.NewClient(lc)
	if err != nil {
		return nil, explainACME(fmt.Errorf("ACME directory %s: %w", lc.CADirURL, err))
	}
	switch m.cfg.TLS.Challenge {
	case "dns-01":
		p, err := m.dnsProvider()
		if err != nil {
			return nil, err
		}
		var opts []dns01.ChallengeOption
		if r := m.cfg.TLS.Resolver; r != "" {
			opts = append(opts, dns01.AddRecursiveNameservers([]string{r}), dns01.DisableAuthoritativeNssPropagationRequirement())
		}
		if err := client.Challenge.SetDNS01Provider(p, opts...); err != nil {
			return nil, err
		}
	default:
		if err := client.Challenge.SetHTTP01Provider(&webrootProvider{targets: m.targets, ctx: ctx}); err != nil {
			return nil, err
		}
	}
	if acct.Registration == nil {
		reg, err := client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, explainACME(fmt.Errorf("registering the ACME account: %w", err))
		}
		acct.Registration = reg
		if err := acct.save(first); err != nil {
			return nil, err
		}
	}
	m.client = client
	return client, nil
}

// webrootProvider serves HTTP-01 tokens from every target's webroot.
type webrootProvider struct {
	targets []Target
	ctx     context.Context
}

func (p *webrootProvider) Present(domain, token, keyAuth string) error {
	for _, t := range p.targets {
		if err := t.Host.WriteFile(path.Join(Webroot(t.Base), ".well-known", "acme-challenge", token), []byte(keyAuth), 0o644); err != nil {
			return fmt.Errorf("%s: writing the HTTP-01 token for %s: %w", t.Name, domain, err)
		}
	}
	return nil
}

func (p *webrootProvider) CleanUp(domain, token, keyAuth string) error {
	var errs []error
	for _, t := range p.targets {
		if err := t.Host.Remove(path.Join(Webroot(t.Base), ".well-known", "acme-challenge", token)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// account is the ACME account (lego's registration.User), kept on the
// first target.
type account struct {
	Email        string                 `json:"email"`
	Directory    string                 `json:"directory"`
	Registration *registration.Resource `json:"registration,omitempty"`
	key          crypto.PrivateKey
}

func (a *account) GetEmail() string                        { return a.Email }
func (a *account) GetRegistration() *registration.Resource { return a.Registration }
func (a *account) GetPrivateKey() crypto.PrivateKey        { return a.key }

func accountDir(t Target) string { return path.Join(t.Base, "tls", "account") }

// loadAccount reads the account key and registration, or makes a new key
// (the registration follows); an account of another directory or email is
// not reused.
func loadAccount(t Target, directory, email string) (*account, error) {
	dir := accountDir(t)
	keyPEM, err := t.Host.ReadFile(path.Join(dir, "key.pem"))
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := t.Host.MkdirPrivate(dir); err != nil {
			return nil, err
		}
		if err := t.Host.WriteFile(path.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("%s: saving the ACME account key: %w", t.Name, err)
		}
		return &account{Email: email, Directory: directory, key: key}, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: %s is not a PEM key", t.Name, path.Join(dir, "key.pem"))
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: the ACME account key: %w", t.Name, err)
	}
	a := &account{Email: email, Directory: directory, key: key}
	data, err := t.Host.ReadFile(path.Join(dir, "account.json"))
	if err == nil {
		var saved account
		if json.Unmarshal(data, &saved) == nil && saved.Directory == directory && saved.Email == email {
			a.Registration = saved.Registration
		}
	}
	return a, nil
}

func (a *account) save(t Target) error {
	data, _ := json.MarshalIndent(a, "", "  ")
	return t.Host.WriteFile(path.Join(accountDir(t), "account.json"), data, 0o600)
}
