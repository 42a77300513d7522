package rollout

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lawsker/lawsker-deploy/certs"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
)

// connectTargets connects to every target (closing them is the caller's,
// through the returned function, also after an error).
func connectTargets(ctx context.Context, cfg *config.Config, res *config.Resolver) ([]certs.Target, func(), error) {
	var ts []certs.Target
	closeAll := func() {
		for _, t := range ts {
			t.Host.Close()
		}
	}
	for _, t := range cfg.Targets {
		e, err := deploy.Endpoint(t, res)
		if err != nil {
			return ts, closeAll, fmt.Errorf("%s: %w", t.Name, err)
		}
		h, err := remote.Connect(ctx, e, 3)
		if err != nil {
			return ts, closeAll, &TargetError{fmt.Errorf("%s: %w", t.Name, err)}
		}
		ts = append(ts, certs.Target{Name: t.Name, Host: h, Base: deploy.NewLayout(cfg, t).Base})
	}
	return ts, closeAll, nil
}

// TLSReport is what `tls issue|renew` did.
type TLSReport struct {
	Results  []certs.Result `json:"results"`
	Reloaded []string       `json:"reloaded,omitempty"` // targets whose nginx reloaded the new certificates
}

// IssueCertificates obtains missing certificates and renews due ones (all
// with force) on every target, then reloads nginx where a site is linked
// (nginx -t first) so renewed certificates serve at once; a site still on
// HTTP turns to HTTPS with the next deploy.
func IssueCertificates(ctx context.Context, cfg *config.Config, res *config.Resolver, force bool, acme *http.Client) (*TLSReport, error) {
	if !cfg.TLS.Enabled {
		return nil, errors.New("tls.enabled is false: nothing to issue")
	}
	m, ts, closeAll, err := manager(ctx, cfg, res)
	defer closeAll()
	if err != nil {
		return nil, err
	}
	m.HTTPClient = acme
	results, issueErr := m.Issue(ctx, force)
	rep := &TLSReport{Results: results}
	changed := false
	for _, r := range results {
		changed = changed || r.Action == "issued" || r.Action == "renewed"
	}
	if !changed {
		return rep, issueErr
	}
	var errs []error
	for i, t := range ts {
		tc := cfg.Targets[i]
		l := deploy.NewLayout(cfg, tc)
		if link, _ := t.Host.Readlink(l.SitePath); link == "" {
			continue // no site yet: the first deploy renders HTTPS
		}
		n := deploy.NginxFor(tc)
		if _, err := t.Host.Run(ctx, n.Test()...); err != nil {
			errs = append(errs, fmt.Errorf("%s: nginx -t refused the configuration with the new certificates (nothing reloaded): %w", t.Name, err))
			continue
		}
		if _, err := t.Host.Run(ctx, n.Reload()...); err != nil {
			errs = append(errs, fmt.Errorf("%s: nginx reload: %w", t.Name, err))
			continue
		}
		rep.Reloaded = append(rep.Reloaded, t.Name)
	}
	return rep, errors.Join(append([]error{issueErr}, errs...)...)
}

// CertificateStatus reads every domain's certificate from the first target.
func CertificateStatus(ctx context.Context, cfg *config.Config, res *config.Resolver) ([]certs.Status, error) {
	m, _, closeAll, err := manager(ctx, cfg, res)
	defer closeAll()
	if err != nil {
		return nil, err
	}
	return m.Status(), nil
}

// manager connects to every target and makes the certificate manager.
func manager(ctx context.Context, cfg *config.Config, res *config.Resolver) (*certs.Manager, []certs.Target, func(), error) {
	ts, closeAll, err := connectTargets(ctx, cfg, res)
	if err != nil {
		return nil, ts, closeAll, err
	}
	m, err := certs.New(cfg, res, ts)
	return m, ts, closeAll, err
}
