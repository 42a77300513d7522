package certs

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/go-acme/lego/v4/challenge"
	"github.com/go-acme/lego/v4/providers/dns/cloudflare"
	"github.com/go-acme/lego/v4/providers/dns/digitalocean"
	"github.com/go-acme/lego/v4/providers/dns/exec"
	"github.com/go-acme/lego/v4/providers/dns/gcloud"
	"github.com/go-acme/lego/v4/providers/dns/hetzner"
	"github.com/go-acme/lego/v4/providers/dns/httpreq"
	"github.com/go-acme/lego/v4/providers/dns/rfc2136"
	"github.com/go-acme/lego/v4/providers/dns/route53"
)

// dnsProviders are the lego DNS providers built in. Each reads its
// settings from the environment variables lego documents for it; any other
// DNS service works through exec (a program of yours) or httpreq (an HTTP
// endpoint), and adding one is one line here (the whole lego registry
// would add ~80 modules and ~80 MB to the binary).
var dnsProviders = map[string]func() (challenge.Provider, error){
	"cloudflare":   func() (challenge.Provider, error) { return cloudflare.NewDNSProvider() },
	"digitalocean": func() (challenge.Provider, error) { return digitalocean.NewDNSProvider() },
	"exec":         func() (challenge.Provider, error) { return exec.NewDNSProvider() },
	"gcloud":       func() (challenge.Provider, error) { return gcloud.NewDNSProvider() },
	"hetzner":      func() (challenge.Provider, error) { return hetzner.NewDNSProvider() },
	"httpreq":      func() (challenge.Provider, error) { return httpreq.NewDNSProvider() },
	"rfc2136":      func() (challenge.Provider, error) { return rfc2136.NewDNSProvider() },
	"route53":      func() (challenge.Provider, error) { return route53.NewDNSProvider() },
}

// DNSProviders lists the built-in DNS provider names.
func DNSProviders() []string {
	var out []string
	for k := range dnsProviders {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dnsProvider makes the configured provider, its credentials (secret
// references in tls.dns_credentials) set as the variables lego reads.
func (m *Manager) dnsProvider() (challenge.Provider, error) {
	name := m.cfg.TLS.DNSProvider
	mk, ok := dnsProviders[name]
	if !ok {
		return nil, fmt.Errorf("tls.dns_provider %q is not built in (%s); exec and httpreq reach any DNS service", name, strings.Join(DNSProviders(), ", "))
	}
	for env, ref := range m.cfg.TLS.DNSCredentials {
		v, err := m.res.Resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("tls.dns_credentials.%s: %w", env, err)
		}
		// lego's providers read their settings from the environment.
		if err := os.Setenv(env, v); err != nil {
			return nil, err
		}
	}
	p, err := mk()
	if err != nil {
		return nil, fmt.Errorf("tls.dns_provider %s: %w (set its variables in tls.dns_credentials)", name, err)
	}
	return p, nil
}
