package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// PreflightOptions say where preflight runs from.
type PreflightOptions struct {
	// RegistryVia is the host:port dialled instead of the registry's own
	// address (a Dagger service forwarding the caller's registry).
	RegistryVia string
	// InEngine says this process is a Dagger function, not on the
	// caller's machine: a loopback registry is the caller's, which the
	// engine pushes to but this process cannot reach, so it is skipped
	// with the reason unless RegistryVia forwards it.
	InEngine bool
}

// Preflight returns read-only checks that what deploy needs can be reached
// from here: every secret resolves, every target accepts our SSH key with
// its host key matching known_hosts, and the registry answers. Nothing is
// changed anywhere (an unknown host key is reported, not recorded).
func Preflight(cfg *config.Config, res *config.Resolver, o PreflightOptions) (*pipelines.Graph, error) {
	network := pipelines.RetryPolicy{Attempts: 3, Initial: 500 * time.Millisecond, Max: 2 * time.Second}
	steps := []pipelines.Step{{
		Name: "secrets", Description: "every secret reference resolves", Timeout: 10 * time.Second,
		Run: func(context.Context) error {
			if ps := cfg.CheckSecrets(res); len(ps) > 0 {
				return ps
			}
			return nil
		},
	}}
	for i, t := range cfg.Targets {
		steps = append(steps, pipelines.Step{
			Name: "ssh:" + t.Name, Description: fmt.Sprintf("SSH to %s@%s:%d, host key checked", t.SSH.User, t.Host, t.SSH.Port),
			Timeout: 3 * t.SSH.ConnectTimeout.D(), Retry: network,
			Run: func(ctx context.Context) error { return checkSSH(ctx, fmt.Sprintf("targets[%d]", i), t, res) },
		})
	}
	if host := RegistryOf(cfg.Backend.Image); host != "" {
		desc, dial := "registry "+host+" answers the OCI distribution API", ""
		if o.RegistryVia != "" {
			desc, dial = desc+" (through "+o.RegistryVia+")", o.RegistryVia
		}
		steps = append(steps, pipelines.Step{
			Name: "registry", Description: desc, Timeout: 15 * time.Second, Retry: network,
			Run: func(ctx context.Context) error {
				if o.InEngine && dial == "" && IsLoopback(host) {
					return pipelines.Skip("registry %s is on your machine's loopback, which a Dagger function cannot reach (the engine itself pushes there): pass --registry=tcp://%s to probe it", host, strings.Replace(host, "127.0.0.1", "localhost", 1))
				}
				return checkRegistry(ctx, host, dial)
			},
		})
	}
	return pipelines.New(steps...)
}

func checkSSH(ctx context.Context, path string, t config.Target, res *config.Resolver) error {
	e, err := Endpoint(t, res)
	if err != nil {
		return fmt.Errorf("%s.%w", path, err)
	}
	wantTOFU := e.TrustOnFirstUse
	e.TrustOnFirstUse = false
	// Preflight never records a host key; report an unknown one instead.
	c, err := remote.Dial(ctx, e)
	var ne *remote.NetError
	switch {
	case errors.Is(err, remote.ErrHostKeyUnknown) && wantTOFU:
		return pipelines.Skip("%v; deploy will record it (ssh.trust_on_first_use)", err)
	case errors.As(err, &ne):
		return pipelines.Retriable(err)
	case err != nil:
		return err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: opening a session: %w", e.Addr(), err)
	}
	defer sess.Close()
	if out, err := sess.CombinedOutput("true"); err != nil {
		return fmt.Errorf("ssh %s: running `true` failed: %v %s", e.Addr(), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkRegistry GETs /v2/: 200 (open) or 401 (authentication required) both
// mean a registry answers. Loopback registries speak plain HTTP, like Docker
// assumes; others HTTPS.
func checkRegistry(ctx context.Context, host, via string) error {
	scheme := "https"
	if IsLoopback(host) {
		scheme = "http"
	}
	url := scheme + "://" + host + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if via != "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, via)
		}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return pipelines.Retriable(fmt.Errorf("registry %s: %w", url, err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized:
		if v := resp.Header.Get("Docker-Distribution-Api-Version"); v != "" && v != "registry/2.0" {
			return fmt.Errorf("registry %s: unexpected API version %q", url, v)
		}
		return nil
	case resp.StatusCode >= 500:
		return pipelines.Retriable(fmt.Errorf("registry %s: status %d", url, resp.StatusCode))
	}
	return fmt.Errorf("registry %s: status %d; is %s an OCI registry?", url, resp.StatusCode, host)
}

// IsLoopback reports whether a host, or the host of a host:port, is this
// machine's loopback (localhost, 127.0.0.0/8, ::1).
func IsLoopback(h string) bool {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
