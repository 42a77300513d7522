package deploy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Docker builds docker argv for one target: commands are data, tested as
// data, and reach the host only through remote.Quote.
type Docker struct{ Host string }

func (d Docker) cmd(args ...string) []string {
	argv := []string{"docker"}
	if d.Host != "" {
		argv = append(argv, "-H", d.Host)
	}
	return append(argv, args...)
}

// Cmd is the docker argv for args (on this target's engine).
func (d Docker) Cmd(args ...string) []string { return d.cmd(args...) }

// Login reads the password on standard input (never in argv).
func (d Docker) Login(registry, user string) []string {
	return d.cmd("login", "--username", user, "--password-stdin", registry)
}

// Pull fetches an image by digest.
func (d Docker) Pull(image string) []string { return d.cmd("pull", "--quiet", image) }

// Run starts a container. network "host" shares the host's network (the
// port is passed in portEnv); "bridge" publishes 127.0.0.1:hostPort to
// containerPort.
func (d Docker) Run(spec ContainerSpec) []string {
	args := []string{"run"}
	if spec.Detach {
		args = append(args, "--detach", "--restart", "unless-stopped")
	} else {
		args = append(args, "--rm")
	}
	args = append(args, "--name", spec.Name, "--env-file", spec.EnvFile,
		"--label", "lawsker.app="+spec.App, "--label", "lawsker.base="+spec.Base, "--label", "lawsker.release="+spec.Release)
	args = append(args, spec.Log...)
	switch spec.Network {
	case "host":
		args = append(args, "--network", "host")
		if spec.HostPort > 0 {
			args = append(args, "--env", spec.PortEnv+"="+strconv.Itoa(spec.HostPort))
		}
	default:
		if spec.HostPort > 0 {
			args = append(args, "--publish", fmt.Sprintf("127.0.0.1:%d:%d", spec.HostPort, spec.ContainerPort))
		}
	}
	if len(spec.Command) > 0 && spec.ReplaceEntrypoint {
		// The command is the whole argv: its first word replaces the
		// image's ENTRYPOINT, the rest follow the image.
		return d.cmd(append(append(args, "--entrypoint", spec.Command[0], spec.Image), spec.Command[1:]...)...)
	}
	args = append(args, spec.Image)
	return d.cmd(append(args, spec.Command...)...)
}

// ContainerSpec is what Run starts.
type ContainerSpec struct {
	Name, App, Release, Image, EnvFile string
	Base                               string // <root>/<app>: tells apart two deploys of one app on a host
	Network, PortEnv                   string
	HostPort, ContainerPort            int
	Command                            []string
	// ReplaceEntrypoint runs Command as the whole argv (--entrypoint).
	ReplaceEntrypoint bool
	Detach            bool
	// Log are docker run's logging options (the log store's syslog
	// driver; none: Docker's default).
	Log []string
}

// Remove stops and removes a container (absent is fine: `|| true` is the
// caller's job; docker reports it as an error).
func (d Docker) Remove(name string) []string { return d.cmd("rm", "--force", name) }

// Stop stops a container, giving it timeout seconds.
func (d Docker) Stop(name string, timeout int) []string {
	return d.cmd("stop", "--time", strconv.Itoa(timeout), name)
}

// Start starts a stopped container.
func (d Docker) Start(name string) []string { return d.cmd("start", name) }

// Logs returns the tail of a container's output.
func (d Docker) Logs(name string, lines int) []string {
	return d.cmd("logs", "--tail", strconv.Itoa(lines), name)
}

// Output is a container's output with timestamps, stderr merged into
// stdout by a constant script (since 0: all it kept; tail 0: every line;
// follow: until the session ends).
func (d Docker) Output(name string, since time.Duration, tail int, follow bool) []string {
	args := []string{"logs", "--timestamps"}
	if since > 0 {
		args = append(args, "--since", strconv.FormatInt(int64(max(since/time.Second, 1)), 10)+"s")
	}
	if tail > 0 {
		args = append(args, "--tail", strconv.Itoa(tail))
	}
	if follow {
		args = append(args, "--follow")
	}
	return append([]string{"sh", "-c", `exec "$@" 2>&1`, "sh"}, d.cmd(append(args, name)...)...)
}

// Running lists the names of running containers of the app deployed under
// base (<root>/<app>).
func (d Docker) Running(base string) []string {
	return d.cmd("ps", "--filter", "label=lawsker.base="+base, "--format", "{{.Names}}")
}

// RemoveImage removes an image (used by pruning; in-use images are kept by docker).
func (d Docker) RemoveImage(image string) []string { return d.cmd("image", "rm", image) }

var digestRef = regexp.MustCompile(`^([a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+)@sha256:[0-9a-f]{64}$`)

// CheckImage checks that image is pinned by digest and comes from the
// configured repository.
func CheckImage(cfg *config.Config, image string) error {
	m := digestRef.FindStringSubmatch(image)
	if m == nil {
		return fmt.Errorf("--backend-image %q must be pinned by digest: %s@sha256:<64 hex digits>", image, cfg.Backend.Image)
	}
	if m[1] != cfg.Backend.Image {
		return fmt.Errorf("--backend-image %q is from %s, but backend.image is %s", image, m[1], cfg.Backend.Image)
	}
	return nil
}

// EnvFile renders the backend's env file (docker --env-file format: one
// KEY=value per line, no quoting, so values must not contain newlines).
func EnvFile(vars map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if strings.ContainsAny(vars[k], "\r\n\x00") {
			return nil, fmt.Errorf("env %s: the value contains a newline or NUL, which docker env files cannot carry", k)
		}
		b.WriteString(k + "=" + vars[k] + "\n")
	}
	return []byte(b.String()), nil
}

// PoolSize is the database pool computed from the target's CPU count: two
// connections per CPU (at least 5), and half as many again as overflow.
func PoolSize(cpus int) (size, overflow int) {
	size = max(5, 2*cpus)
	return size, max(2, size/2)
}

// FreePort finds a port in [lo, hi] on the target's loopback that nothing
// listens on and no recorded release uses, probing through the SSH tunnel.
func FreePort(ctx context.Context, h *remote.Host, lo, hi int, used map[int]bool) (int, error) {
	for p := lo; p <= hi; p++ {
		if used[p] {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := h.DialTCP(pctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		cancel()
		if err == nil {
			c.Close()
			continue // something listens there
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return p, nil
	}
	return 0, fmt.Errorf("no free port in backend.host_port_min-max (%d-%d) on %s", lo, hi, h.Endpoint.Addr())
}

// HealthGate polls the backend through the SSH tunnel until it passes
// `passes` checks in a row, or the deadline passes. It remembers the last
// failure for the error.
func HealthGate(ctx context.Context, h *remote.Host, port int, b config.Backend, hostHeader string, g config.HealthGate) error {
	return healthThrough(ctx, h, "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), b, hostHeader, g)
}

// healthThrough polls base+healthPath through the target's tunnel (base:
// http://addr, or https://addr for nginx's HTTPS servers: the certificate
// is not judged here, the verification suite's TLS check does that).
func healthThrough(ctx context.Context, h *remote.Host, base string, b config.Backend, hostHeader string, g config.HealthGate) error {
	client := tunnelClient(h, g.RequestTimeout.D())
	if strings.HasPrefix(base, "https://") {
		client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{ServerName: hostHeader, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // health through our own tunnel; the suite verifies the chain
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, g.Deadline.D())
	defer cancel()
	url := base + b.HealthPath
	streak, tries := 0, 0
	var last error
	for {
		tries++
		err := checkHealth(ctx, client, url, hostHeader, b.HealthExpect)
		switch {
		case err == nil:
			if streak++; streak >= g.ConsecutivePasses {
				return nil
			}
		case ctx.Err() != nil && last != nil:
			// The deadline cut this request: the failure before it says
			// more than "context deadline exceeded".
			streak = 0
		default:
			streak, last = 0, err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("no failed check, but not enough passes in a row")
			}
			return fmt.Errorf("health gate: %s not healthy within %s (%d checks, %d passes in a row needed): last error: %w", url, g.Deadline, tries, g.ConsecutivePasses, last)
		case <-time.After(g.Interval.D()):
		}
	}
}

func tunnelClient(h *remote.Host, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return h.DialTCP(ctx, addr) },
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func checkHealth(ctx context.Context, client *http.Client, url, hostHeader string, want config.HealthExpect) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if hostHeader != "" {
		req.Host = hostHeader
	}
	req.Header.Set("User-Agent", OwnAgent)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return checks.HealthAnswer(want, resp.StatusCode, body, resp.Header.Get("Content-Type"))
}

// ReleaseHeader names the release that answered, on every response of an
// app's nginx site.
const ReleaseHeader = "X-Lawsker-Release"

// WaitServing polls nginx on the target (through the SSH tunnel) until the
// responses come from release id: `nginx -s reload` returns before the new
// workers take over, so a switch is confirmed, not assumed.
func WaitServing(ctx context.Context, h *remote.Host, base, path, hostHeader, id string, timeout time.Duration) error {
	client := tunnelClient(h, 5*time.Second)
	if strings.HasPrefix(base, "https://") {
		client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{ServerName: hostHeader, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // which release answers, through our own tunnel
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Three answers in a row, each on a fresh connection: just after the
	// signal, the old worker may still accept a connection or two.
	const inARow = 3
	var last string
	streak := 0
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return err
		}
		if hostHeader != "" {
			req.Host = hostHeader
		}
		req.Header.Set("User-Agent", OwnAgent)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			got := resp.Header.Get(ReleaseHeader)
			if got == id {
				if streak++; streak >= inARow {
					return nil
				}
				continue
			}
			streak, last = 0, fmt.Sprintf("%s: %q", ReleaseHeader, got)
		} else {
			streak, last = 0, err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nginx at %s did not serve release %s within %s after the reload (last: %s)", base, id, timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
