package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Endpoint says how to reach one host.
type Endpoint struct {
	Name            string // target name, for messages
	Host            string
	Port            int
	User            string
	PrivateKey      []byte // PEM; nil uses the SSH agent (SSH_AUTH_SOCK)
	KnownHosts      string // path; "~/" is expanded
	TrustOnFirstUse bool   // record an unknown host key (never a changed one)
	ConnectTimeout  time.Duration
	// Via, when set, is the host:port dialled instead of Addr (a Dagger
	// service forwarding the caller's reach of the host, or any other
	// forward). Host and Port still name the host: its key is checked
	// against known_hosts under that name.
	Via string
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// dialAddr is where the connection goes: Via, else Addr.
func (e Endpoint) dialAddr() string {
	if e.Via != "" {
		return e.Via
	}
	return e.Addr()
}

// ErrHostKeyChanged is wrapped when the host presents a key other than the
// one known_hosts records for it.
var ErrHostKeyChanged = errors.New("host key changed")

// ErrHostKeyUnknown is wrapped when known_hosts has no key for the host and
// trust on first use is off.
var ErrHostKeyUnknown = errors.New("host key unknown")

// Dial connects and authenticates, bounded by ctx and ConnectTimeout. The
// returned error says which part failed: the network, the host key or the
// authentication. Network failures are wrapped in a *NetError so callers can
// retry them.
func Dial(ctx context.Context, e Endpoint) (*ssh.Client, error) {
	where := fmt.Sprintf("ssh %s@%s", e.User, e.Addr())
	if e.Via != "" {
		where += " (through " + e.Via + ")"
	}
	auth, closeAuth, err := authMethod(e)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer closeAuth()
	hostKeys, err := hostKeyCallback(e)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	timeout := e.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.dialAddr())
	if err != nil {
		return nil, &NetError{Op: where, Err: err}
	}
	// The handshake honours the same bound.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	cc, chans, reqs, err := ssh.NewClientConn(conn, e.Addr(), &ssh.ClientConfig{
		User: e.User, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: hostKeys, Timeout: timeout,
		HostKeyAlgorithms: hostKeyAlgorithms(e),
	})
	if err != nil {
		conn.Close()
		var keyErr *hostKeyError
		switch {
		case errors.As(err, &keyErr):
			return nil, fmt.Errorf("%s: %w", where, keyErr)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%s: authentication failed: the server accepted none of the offered keys (is the public key in ~%s/.ssh/authorized_keys?)", where, e.User)
		case ctx.Err() != nil:
			return nil, &NetError{Op: where, Err: fmt.Errorf("handshake did not finish within %s", timeout)}
		}
		return nil, &NetError{Op: where, Err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// NetError is a network failure (refused, unreachable, timed out): worth a
// retry, unlike a key or authentication failure.
type NetError struct {
	Op  string
	Err error
}

func (e *NetError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *NetError) Unwrap() error { return e.Err }

func authMethod(e Endpoint) (ssh.AuthMethod, func(), error) {
	if len(e.PrivateKey) > 0 {
		signer, err := ssh.ParsePrivateKey(e.PrivateKey)
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			return nil, nil, errors.New("the private key is protected by a passphrase: load it into ssh-agent and leave ssh.key empty")
		case err != nil:
			// The parser's message never includes key material.
			return nil, nil, fmt.Errorf("the private key cannot be read (%v): ssh.key must reference an OpenSSH or PEM private key", err)
		}
		return ssh.PublicKeys(signer), func() {}, nil
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, errors.New("no key: ssh.key is empty and no SSH agent is running (SSH_AUTH_SOCK is unset)")
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("SSH agent at SSH_AUTH_SOCK: %w", err)
	}
	return ssh.PublicKeysCallback(agent.NewClient(conn).Signers), func() { conn.Close() }, nil
}

// ExpandHome replaces a leading "~/" with the user's home folder.
func ExpandHome(p string) (string, error) {
	if !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot expand %s: %w", p, err)
	}
	return filepath.Join(home, p[2:]), nil
}

type hostKeyError struct {
	msg string
	err error
}

func (e *hostKeyError) Error() string { return e.msg }
func (e *hostKeyError) Unwrap() error { return e.err }

func hostKeyCallback(e Endpoint) (ssh.HostKeyCallback, error) {
	path, err := ExpandHome(e.KnownHosts)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if !e.TrustOnFirstUse {
			return nil, fmt.Errorf("known_hosts file %s does not exist: add the host's key (ssh-keyscan -p %d %s >> %s, after checking its fingerprint) or set ssh.trust_on_first_use", path, e.Port, e.Host, path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			return nil, err
		}
	}
	check, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return err
		}
		got := ssh.FingerprintSHA256(key)
		if len(ke.Want) > 0 {
			var want []string
			for _, k := range ke.Want {
				want = append(want, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
			}
			return &hostKeyError{err: ErrHostKeyChanged, msg: fmt.Sprintf(
				"host key changed: the server presented %s %s but known_hosts records %s; refusing to connect (if the host was really reinstalled, remove the old line and add the new key after checking it)",
				key.Type(), got, strings.Join(want, ", "))}
		}
		if !e.TrustOnFirstUse {
			return &hostKeyError{err: ErrHostKeyUnknown, msg: fmt.Sprintf(
				"host key unknown: %s has no entry in %s; the server presented %s %s (check it, then add it, or set ssh.trust_on_first_use)",
				knownhosts.Normalize(hostname), path, key.Type(), got)}
		}
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("recording the host key: %w", err)
		}
		defer f.Close()
		_, err = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key))
		return err
	}, nil
}

// hostKeyAlgorithms prefers the key types known_hosts has for the host, so
// the server presents the key we can check (not another of its keys).
func hostKeyAlgorithms(e Endpoint) []string {
	path, err := ExpandHome(e.KnownHosts)
	if err != nil {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	want := knownhosts.Normalize(e.Addr())
	var algos []string
	for len(data) > 0 {
		_, hosts, key, _, rest, err := ssh.ParseKnownHosts(data)
		if err != nil {
			break
		}
		data = rest
		for _, h := range hosts {
			if h != want {
				continue
			}
			if key.Type() == ssh.KeyAlgoRSA {
				algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			}
			algos = append(algos, key.Type())
		}
	}
	return algos
}
