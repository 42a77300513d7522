package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/providers/http/webroot"
	"github.com/go-acme/lego/v4/registration"

	"github.com/lawsker/lawsker-deploy/config"
)

// BenchmarkIssueVsLego: three certificates against Pebble (HTTP-01 through
// nginx), our Issue (DNS check, the account read from the target, tokens
// and certificates over SFTP) against lego's own library calls in a loop
// (its webroot provider writing locally, the files written locally). The
// median of five alternating rounds each; prints ours / lego. lego polls
// the authorization with a randomized backoff (seconds), which dominates
// both and makes the ratio noisy, so it also prints what our Issue spends
// outside lego's Obtain per domain (DNS check, account, installs over SFTP).
func BenchmarkIssueVsLego(b *testing.B) {
	r := newRig(b, 0)
	domains := []string{"a.lawsker.test", "b.lawsker.test", "c.lawsker.test"}
	for _, d := range domains {
		r.dns.AddA(b, d, "127.0.0.1")
	}
	cfg := r.config(b, domains, "")
	m := r.manager(b, cfg, &config.Resolver{})
	if _, err := m.Issue(b.Context(), false); err != nil { // the account exists in both from here
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	user := &account{Email: "ref@lawsker.test", key: key}
	lc := lego.NewConfig(user)
	lc.CADirURL, lc.HTTPClient, lc.Certificate.KeyType = r.pebble.Directory, r.pebble.HTTPClient(), certcrypto.EC256
	ref, err := lego.NewClient(lc)
	if err != nil {
		b.Fatal(err)
	}
	wr, err := webroot.NewHTTPProvider(filepath.Join(r.base, "acme"))
	if err != nil {
		b.Fatal(err)
	}
	if err := ref.Challenge.SetHTTP01Provider(wr); err != nil {
		b.Fatal(err)
	}
	if user.Registration, err = ref.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true}); err != nil {
		b.Fatal(err)
	}
	out := b.TempDir()
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	for b.Loop() {
		var ours, theirs, own []time.Duration
		for range 5 {
			start := time.Now()
			fresh := r.manager(b, cfg, &config.Resolver{})
			if _, err := fresh.Issue(b.Context(), true); err != nil {
				b.Fatal(err)
			}
			ours = append(ours, time.Since(start))
			own = append(own, time.Since(start)-fresh.ACMETime())
			start = time.Now()
			for _, d := range domains {
				res, err := ref.Certificate.Obtain(certificate.ObtainRequest{Domains: []string{d}, Bundle: true})
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(out, d+".key"), res.PrivateKey, 0o600); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(out, d+".pem"), res.Certificate, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			theirs = append(theirs, time.Since(start))
		}
		b.ReportMetric(median(ours).Seconds()/median(theirs).Seconds(), "x_lego_loop")
		b.ReportMetric(float64(median(own).Milliseconds())/3, "ms_own_per_domain")
		b.Logf("ours %v, lego loop %v", ours, theirs)
	}
}
