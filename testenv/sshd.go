package testenv

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHD is a throwaway OpenSSH server on loopback: the "target host" of
// tests. It accepts the generated user key for the current user, and its
// host key is in KnownHosts, so host key checking stays on.
type SSHD struct {
	Host       string
	Port       int
	User       string
	KeyPath    string // private key of the user (OpenSSH format)
	KnownHosts string // known_hosts file with the server's host key
	HostKey    string // the server's public host key line ("ssh-ed25519 AAAA...")
	Dir        string
	proc       *Process
}

// StartSSHD generates host and user keys and starts sshd.
func StartSSHD(t testing.TB) *SSHD { t.Helper(); return StartSSHDIn(t, nil) }

// StartSSHDIn starts sshd inside a network namespace (nil: this one's).
func StartSSHDIn(t testing.TB, ns *Netns) *SSHD {
	t.Helper()
	return startSSHD(t, ns, "127.0.0.1")
}

// StartSSHDOn starts sshd on another loopback address (127.0.0.2, ...):
// one "host" of a fleet.
func StartSSHDOn(t testing.TB, addr string) *SSHD {
	t.Helper()
	return startSSHD(t, nil, addr)
}

func startSSHD(t testing.TB, ns *Netns, addr string) *SSHD {
	t.Helper()
	keygen := Bin(t, "ssh-keygen")
	dir := TempDir(t, "sshd")
	u, err := user.Current()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &SSHD{Host: addr, Port: FreePort(t), User: u.Username, Dir: dir,
		KeyPath: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts")}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	MustRun(t, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "lawsker-test-host", "-f", hostKey)
	MustRun(t, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "lawsker-test-user", "-f", s.KeyPath)
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	fields := strings.Fields(string(pub))
	s.HostKey = fields[0] + " " + fields[1]
	writeFile(t, s.KnownHosts, fmt.Sprintf("[%s]:%d %s\n", s.Host, s.Port, s.HostKey), 0o644)
	userPub, err := os.ReadFile(s.KeyPath + ".pub")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	writeFile(t, authorized, string(userPub), 0o644)
	cfg := filepath.Join(dir, "sshd_config")
	writeFile(t, cfg, fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, s.Port, s.Host, hostKey, filepath.Join(dir, "sshd.pid"), authorized), 0o644)
	// sshd needs its privilege separation folder.
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	s.proc = Start(t, "sshd", ns.command(Bin(t, "sshd"), "-D", "-e", "-f", cfg))
	s.proc.WaitFor(t, 15*time.Second, "accepting connections", ns.ready(fmt.Sprintf("%s:%d", s.Host, s.Port)))
	return s
}

// SSH runs a command on the server with the OpenSSH client, host key
// checked against KnownHosts.
func (s *SSHD) SSH(ctx context.Context, command ...string) (string, error) {
	args := []string{"-i", s.KeyPath, "-p", strconv.Itoa(s.Port), "-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", s.User + "@" + s.Host, "--"}
	return Run(ctx, "ssh", append(args, command...)...)
}

// Log is the server's log tail.
func (s *SSHD) Log() string { return s.proc.Log() }

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// DenyForwarding makes sshd refuse TCP forwarding from its next
// connection on (a host whose sshd forbids tunnels: everything lawsker-deploy
// reaches through them there fails, e.g. a health gate).
// It returns what allows them again.
func (s *SSHD) DenyForwarding(t testing.TB) (allow func()) {
	t.Helper()
	cfg := filepath.Join(s.Dir, "sshd_config")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	reload := func(content string) {
		writeFile(t, cfg, content, 0o644)
		s.proc.Signal(t, syscall.SIGHUP)
		time.Sleep(300 * time.Millisecond) // sshd re-executes itself with the new configuration
	}
	reload(string(data) + "AllowTcpForwarding no\nAllowStreamLocalForwarding no\n")
	return func() { reload(string(data)) }
}
