package testenv

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SMTP is a mail server that accepts every message and prints it: Python's
// smtpd DebuggingServer (Debian's python3), for email notification tests.
type SMTP struct {
	Host string
	Port int
	proc *Process
}

// StartSMTP starts the server on a free loopback port.
func StartSMTP(t testing.TB) *SMTP {
	t.Helper()
	port := FreePort(t)
	s := &SMTP{Host: "127.0.0.1", Port: port}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
	cmd := commandIn(TempDir(t, "smtp"), Bin(t, "python3"), "-u", "-W", "ignore::DeprecationWarning", "-m", "smtpd", "-n", "-c", "DebuggingServer", addr)
	s.proc = Start(t, "smtpd", cmd)
	s.proc.WaitFor(t, 15*time.Second, "accepting connections", TCPReady(addr))
	return s
}

// WaitMessage waits until a received message contains every part, and
// returns what the server printed.
func (s *SMTP) WaitMessage(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := s.proc.Log()
		all := true
		for _, p := range parts {
			all = all && strings.Contains(log, p)
		}
		if all {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: smtpd received no message with %q within %s; it printed:\n%s", parts, timeout, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
