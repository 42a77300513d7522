package checks

import (
	"context"
	"net"
	"time"

	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
)

// Route sends the suite's connections to some hosts another way than a
// direct dial: through a target's SSH connection when the target itself is
// reached through a forward (a Dagger function runs in the engine's network,
// where the caller's 127.0.0.1 or VPN addresses mean nothing). A nil Route
// dials everything directly.
type Route struct {
	// Hosts are the host names and addresses whose connections go
	// through Dial (as the URL or the configuration writes them).
	Hosts map[string]bool
	// Dial reaches host:port as the target does (its DialTCP).
	Dial pgconfig.Dialer
	// Why is said when a check cannot run through the route (a port scan).
	Why string
}

// Routes reports whether connections to host go through the route.
func (r *Route) Routes(host string) bool { return r != nil && r.Hosts[host] }

// DialContext dials addr through the route when its host is routed, else
// directly, bounded by timeout (0: none beyond ctx).
func (r *Route) DialContext(ctx context.Context, network, addr string, timeout time.Duration) (net.Conn, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && r.Routes(host) {
		return r.Dial(ctx, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
