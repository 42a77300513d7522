package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot is the repository's top folder (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Bin returns the path of a server binary: PATH, /usr/sbin, PostgreSQL's
// versioned bin folder, or the repository's .cache/bin (Go-built servers).
// A missing binary fails the test.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p, err := findBin(name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

func findBin(name string) (string, error) {
	candidates := []string{filepath.Join(RepoRoot(), ".cache", "bin", name), "/usr/sbin/" + name}
	if pg, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(pg) > 0 {
		sort.Strings(pg)
		candidates = append(candidates, filepath.Join(pg[len(pg)-1], name))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found (run scripts/setup-testenv.sh, which installs every test server)", name)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TempDir is a folder other users can enter (servers that drop privileges
// need that; t.TempDir is private to root), removed when the test ends.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lawsker-"+prefix+"-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Process is a server started for one test.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Log returns the last lines the process wrote (stdout and stderr).
func (p *Process) Log() string {
	lines := strings.Split(strings.TrimRight(p.log.String(), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Start runs a server in its own process group; it is stopped (SIGTERM,
// then SIGKILL after 5 s) when the test ends.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Stop ends the process group and waits (bounded) for it.
func (p *Process) Stop() {
	if done, _ := p.Exited(); done {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// WaitFor polls check every 50 ms until it succeeds, the process exits, or
// the timeout passes; failures report the last error and the server's log.
func (p *Process) WaitFor(t testing.TB, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	if err := p.waitFor(t.Context(), timeout, check); err != nil {
		t.Fatalf("testenv: %s: %s: %v\n--- %s log ---\n%s", p.Name, what, err, p.Name, p.Log())
	}
}

func (p *Process) waitFor(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		if done, err := p.Exited(); done {
			return fmt.Errorf("exited (%v) before it was ready: last error: %w", err, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: last error: %w", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TCPReady is a check that a TCP port accepts connections.
func TCPReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// Run runs a command to completion (bounded by ctx) and returns its combined
// output; a failure includes the output.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return string(out), err
	}
	return string(out), nil
}

// MustRun is Run that fails the test.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := Run(ctx, name, args...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return out
}

// commandIn is exec.Command with a working folder.
func commandIn(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd
}

// Signal sends sig to the process (not its group).
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("testenv: signal %s: %v", p.Name, err)
	}
}
