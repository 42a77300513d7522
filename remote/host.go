package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Host is one connection to a target, reused for every command and file
// operation of a run (sessions are multiplexed over it).
type Host struct {
	Endpoint Endpoint
	client   *ssh.Client
	mu       sync.Mutex
	sftp     *sftp.Client
}

// Connect dials with bounded retries: network failures (refused, timed out)
// are retried up to attempts times with a growing pause; key and host key
// failures are not.
func Connect(ctx context.Context, e Endpoint, attempts int) (*Host, error) {
	var last error
	for i := 1; i <= max(attempts, 1); i++ {
		c, err := Dial(ctx, e)
		if err == nil {
			h := &Host{Endpoint: e, client: c}
			// Almost every run reads or writes files: the SFTP subsystem
			// starts while the first command runs (a failure here is
			// retried by the first Files call).
			go func() { _, _ = h.Files() }()
			return h, nil
		}
		last = err
		var ne *NetError
		if !errors.As(err, &ne) || i == attempts {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(time.Duration(i) * 500 * time.Millisecond):
		}
	}
	return nil, last
}

// Close ends the connection.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sftp != nil {
		h.sftp.Close()
	}
	return h.client.Close()
}

// DialTCP opens a TCP connection from the target (an SSH tunnel): the
// health gate and database checks reach 127.0.0.1 services on the target
// this way, with nothing installed there.
func (h *Host) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	return h.dial(ctx, "tcp", addr)
}

// DialUnix opens a connection to a unix socket on the target (OpenSSH's
// streamlocal forwarding): the Docker engine's API, say, without a shell
// session.
func (h *Host) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	return h.dial(ctx, "unix", path)
}

func (h *Host) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := h.client.Dial(network, addr)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return &deadlineConn{Conn: r.c}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// RemoteError is a command that ran and failed on the target.
type RemoteError struct {
	Host     string
	Command  string // quoted argv
	ExitCode int    // -1 when the command did not report one
	Stderr   string // last lines
}

func (e *RemoteError) Error() string {
	msg := fmt.Sprintf("%s: `%s` exited %d", e.Host, e.Command, e.ExitCode)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Run runs argv on the target (quoted with Quote: no value reaches a shell
// unquoted) and returns its standard output. Secrets never go in argv: pass
// them on standard input (RunInput) or in a 0600 file.
func (h *Host) Run(ctx context.Context, argv ...string) (string, error) {
	return h.RunInput(ctx, nil, argv...)
}

// RunScript runs several commands in one session, each quoted with Quote
// and joined with &&: the first failure stops the rest and is reported.
// It saves a round trip per command.
func (h *Host) RunScript(ctx context.Context, stdin io.Reader, cmds ...[]string) (string, error) {
	return h.RunInput(ctx, stdin, "sh", "-c", Script(cmds...))
}

// Script is the shell text of RunScript: each command quoted with Quote,
// joined with && (the first failure stops the rest).
func Script(cmds ...[]string) string {
	parts := make([]string, len(cmds))
	for i, c := range cmds {
		parts[i] = Quote(c...)
	}
	return strings.Join(parts, " && ")
}

// SymlinkCmds are the commands that point link at target atomically (a new
// link beside it, renamed over the old one), for RunScript.
func SymlinkCmds(target, link string) [][]string {
	tmp := link + ".tmp-lawsker"
	return [][]string{{"ln", "-sfn", target, tmp}, {"mv", "-Tf", tmp, link}}
}

// RunStream runs argv with its standard output streamed to stdout (a dump
// piped into a store, with no copy in memory).
func (h *Host) RunStream(ctx context.Context, stdin io.Reader, stdout io.Writer, argv ...string) error {
	sess, err := h.client.NewSession()
	if err != nil {
		return &NetError{Op: "ssh " + h.Endpoint.Addr(), Err: fmt.Errorf("opening a session: %w", err)}
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, &limitedTail{max: 8 << 10, buf: &stderr}
	cmd := Quote(argv...)
	if err := sess.Start(cmd); err != nil {
		return fmt.Errorf("%s: starting `%s`: %w", h.Endpoint.Addr(), cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		sess.Close()
		return fmt.Errorf("%s: `%s`: %w", h.Endpoint.Addr(), cmd, ctx.Err())
	}
	if err != nil {
		re := &RemoteError{Host: h.Endpoint.Addr(), Command: cmd, ExitCode: -1, Stderr: lastLines(stderr.String(), 20)}
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			re.ExitCode = ee.ExitStatus()
		}
		return re
	}
	return nil
}

// RunInput is Run with standard input.
func (h *Host) RunInput(ctx context.Context, stdin io.Reader, argv ...string) (string, error) {
	var stdout bytes.Buffer
	err := h.RunStream(ctx, stdin, &stdout, argv...)
	if ctx.Err() != nil && err != nil {
		// The session may still be writing: the buffer is not read.
		return "", err
	}
	return stdout.String(), err
}

// limitedTail keeps only the last max bytes written.
type limitedTail struct {
	max int
	buf *bytes.Buffer
}

func (l *limitedTail) Write(p []byte) (int, error) {
	l.buf.Write(p)
	if over := l.buf.Len() - l.max; over > 0 {
		l.buf.Next(over)
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Files returns the SFTP client of this connection (opened once).
func (h *Host) Files() (*sftp.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sftp != nil {
		return h.sftp, nil
	}
	c, err := sftp.NewClient(h.client)
	if err != nil {
		return nil, fmt.Errorf("%s: sftp: %w", h.Endpoint.Addr(), err)
	}
	h.sftp = c
	return c, nil
}

// WriteFile replaces a remote file atomically (a temporary file in the same
// folder, then a rename over it), creating parent folders.
func (h *Host) WriteFile(p string, data []byte, mode os.FileMode) error {
	_, err := h.WriteFrom(p, bytes.NewReader(data), mode)
	return err
}

// WriteFrom streams r into a remote file atomically: a temporary file in
// the same folder (created with mode), renamed over p only once r is read to
// its end; on any error the temporary file is removed and p is untouched.
// It returns the bytes written.
func (h *Host) WriteFrom(p string, r io.Reader, mode os.FileMode) (int64, error) {
	fs, err := h.Files()
	if err != nil {
		return 0, err
	}
	if err := fs.MkdirAll(path.Dir(p)); err != nil {
		return 0, fmt.Errorf("%s: mkdir %s: %w", h.Endpoint.Addr(), path.Dir(p), err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", p, time.Now().UnixNano())
	f, err := fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return 0, fmt.Errorf("%s: write %s: %w", h.Endpoint.Addr(), p, err)
	}
	fail := func(what string, err error) (int64, error) {
		f.Close()
		fs.Remove(tmp)
		return 0, fmt.Errorf("%s: %s %s: %w", h.Endpoint.Addr(), what, p, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail("chmod", err)
	}
	// Pipelined writes: many requests in flight instead of one round trip
	// per 32 KiB packet. A failed write leaves holes, but only in the
	// temporary file, which then goes.
	n, err := f.ReadFromWithConcurrency(r, 0)
	if err != nil {
		return fail("write", err)
	}
	if err := f.Close(); err != nil {
		return fail("write", err)
	}
	if err := fs.PosixRename(tmp, p); err != nil {
		fs.Remove(tmp)
		return 0, fmt.Errorf("%s: rename %s: %w", h.Endpoint.Addr(), p, err)
	}
	return n, nil
}

// ReadFile reads a remote file; a missing file wraps os.ErrNotExist.
func (h *Host) ReadFile(p string) ([]byte, error) {
	fs, err := h.Files()
	if err != nil {
		return nil, err
	}
	f, err := fs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", h.Endpoint.Addr(), p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", h.Endpoint.Addr(), p, err)
	}
	return data, nil
}

// Symlink points link at target atomically: a new link beside it, then a
// rename over the old one, so readers see the old target or the new.
func (h *Host) Symlink(ctx context.Context, target, link string) error {
	_, err := h.RunScript(ctx, nil, SymlinkCmds(target, link)...)
	return err
}

// MkdirAll creates a folder and its parents over SFTP (no shell session).
func (h *Host) MkdirAll(p string) error {
	fs, err := h.Files()
	if err != nil {
		return err
	}
	if err := fs.MkdirAll(p); err != nil {
		return fmt.Errorf("%s: mkdir %s: %w", h.Endpoint.Addr(), p, err)
	}
	return nil
}

// MkdirPrivate creates p (and its parents) and makes p readable by its
// owner only (a folder of private keys).
func (h *Host) MkdirPrivate(p string) error {
	if err := h.MkdirAll(p); err != nil {
		return err
	}
	fs, err := h.Files()
	if err != nil {
		return err
	}
	if err := fs.Chmod(p, 0o700); err != nil {
		return fmt.Errorf("%s: chmod %s: %w", h.Endpoint.Addr(), p, err)
	}
	return nil
}

// Remove removes a file or an empty folder over SFTP; a missing one is not
// an error.
func (h *Host) Remove(p string) error {
	fs, err := h.Files()
	if err != nil {
		return err
	}
	if err := fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: remove %s: %w", h.Endpoint.Addr(), p, err)
	}
	return nil
}

// Mkdir creates one folder over SFTP, atomically: of two callers one
// succeeds and the other gets an error wrapping os.ErrExist (how a lock is
// taken without a shell session).
func (h *Host) Mkdir(p string) error {
	fs, err := h.Files()
	if err != nil {
		return err
	}
	if err := fs.Mkdir(p); err != nil {
		// SFTP servers answer a generic failure; whether the folder is
		// there says what it was.
		if _, serr := fs.Lstat(p); serr == nil {
			return fmt.Errorf("%s: mkdir %s: %w", h.Endpoint.Addr(), p, os.ErrExist)
		}
		return fmt.Errorf("%s: mkdir %s: %w", h.Endpoint.Addr(), p, err)
	}
	return nil
}

// Readlink returns where a symlink points ("" when it does not exist).
func (h *Host) Readlink(p string) (string, error) {
	fs, err := h.Files()
	if err != nil {
		return "", err
	}
	t, err := fs.ReadLink(p)
	if errors.Is(err, os.ErrNotExist) || (err != nil && strings.Contains(err.Error(), "not exist")) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: readlink %s: %w", h.Endpoint.Addr(), p, err)
	}
	return t, nil
}

// StatGlob returns the modes of the files matching a glob pattern (SFTP, no
// shell): for permission checks.
func (h *Host) StatGlob(pattern string) (map[string]os.FileMode, error) {
	fs, err := h.Files()
	if err != nil {
		return nil, err
	}
	paths, err := fs.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: glob %s: %w", h.Endpoint.Addr(), pattern, err)
	}
	out := map[string]os.FileMode{}
	for _, p := range paths {
		st, err := fs.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: stat %s: %w", h.Endpoint.Addr(), p, err)
		}
		if st.Mode().IsRegular() {
			out[p] = st.Mode()
		}
	}
	return out, nil
}

// deadlineConn gives an SSH channel (which rejects deadlines) deadlines
// that work: when one passes, the connection is closed, so a blocked read
// or write returns. Clients such as go-redis rely on them.
type deadlineConn struct {
	net.Conn
	mu    sync.Mutex
	timer *time.Timer
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if !t.IsZero() {
		c.timer = time.AfterFunc(time.Until(t), func() { c.Conn.Close() })
	}
	return nil
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// DiskUsage returns the total and available bytes of the file system
// holding path (SFTP's statvfs extension: no shell).
func (h *Host) DiskUsage(p string) (total, avail uint64, err error) {
	fs, err := h.Files()
	if err != nil {
		return 0, 0, err
	}
	st, err := fs.StatVFS(p)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: statvfs %s: %w", h.Endpoint.Addr(), p, err)
	}
	return st.TotalSpace(), st.Frsize * st.Bavail, nil
}
