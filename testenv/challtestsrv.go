package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ChallTestSrv is pebble-challtestsrv as a DNS server: A records and
// DNS-01 TXT records set through its management API. Pebble resolves
// through it (PebbleOptions.DNSServer), and so can the code under test.
type ChallTestSrv struct {
	DNS        string // host:port (UDP and TCP)
	Management string // http://host:port
	proc       *Process
}

// StartChallTestSrv starts it with no default answers: a name resolves
// only once AddA gives it an address.
func StartChallTestSrv(t testing.TB) *ChallTestSrv {
	t.Helper()
	dns, mgmt := fmt.Sprintf("127.0.0.1:%d", FreePort(t)), fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	c := &ChallTestSrv{DNS: dns, Management: "http://" + mgmt}
	c.proc = Start(t, "pebble-challtestsrv", exec.Command(Bin(t, "pebble-challtestsrv"),
		"-dnsserver", dns, "-management", mgmt, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-defaultIPv4", "", "-defaultIPv6", ""))
	c.proc.WaitFor(t, 15*time.Second, "answering its management API", TCPReady(mgmt))
	return c
}

// Post calls a management endpoint (add-a, set-txt, clear-txt, ...).
func (c *ChallTestSrv) Post(ctx context.Context, endpoint string, body any) error {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Management+"/"+endpoint, bytes.NewReader(data))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("challtestsrv %s: %s", endpoint, resp.Status)
	}
	return nil
}

// AddA makes host resolve to the addresses.
func (c *ChallTestSrv) AddA(t testing.TB, host string, addrs ...string) {
	t.Helper()
	if !strings.HasSuffix(host, ".") {
		host += "."
	}
	if err := c.Post(t.Context(), "add-a", map[string]any{"host": host, "addresses": addrs}); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
