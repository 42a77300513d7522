package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

// The real binary, interrupted twice while a step hangs: the first Ctrl-C
// stops new work and lets the running step drain, the second aborts it; the
// run ends promptly, exits 1 and its report records what was cancelled.
func TestCtrlCTwiceAbortsAndReports(t *testing.T) {
	bin := testenv.BuildStatic(t, "./cmd/lawsker-deploy", "lawsker-deploy")
	// A "target" that accepts connections and never speaks SSH.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(kh, nil, 0o600))
	cfg := filepath.Join(dir, "deploy.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"version": 1, "app": "web",
 "targets": [{"name": "silent", "host": "127.0.0.1", "ssh": {"port": %d, "key": "env:SSH_KEY", "known_hosts": %q, "connect_timeout": "60s"}}],
 "backend": {"image": "127.0.0.1:%d/acme/web"}, "execution": {"drain": "1m", "max_workers": 1}}`, l.Addr().(*net.TCPAddr).Port, kh, testenv.FreePort(t))), 0o644))
	key := testenv.MustRun(t, "bash", "-c", "k=$(mktemp -u) && ssh-keygen -q -t ed25519 -N '' -f $k && cat $k && rm -f $k $k.pub")

	cmd := exec.Command(bin, "preflight", "--config", cfg, "--reports-dir", filepath.Join(dir, "reports"), "--logs-dir", filepath.Join(dir, "logs"))
	cmd.Env = append(os.Environ(), "SSH_KEY="+key, "CI=true")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "[ssh:silent] started") })
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "interrupted: no new steps start") })
	time.Sleep(200 * time.Millisecond)
	assert.Nil(t, cmd.ProcessState, "the running step drains after one Ctrl-C")
	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, stderr.String())
	assert.Equal(t, exitFailed, ee.ExitCode())
	assert.Less(t, time.Since(start), 10*time.Second, "the second Ctrl-C aborts at once")
	assert.Contains(t, stderr.String(), "aborting running steps")

	reports, err := filepath.Glob(filepath.Join(dir, "reports", "preflight_*.json"))
	require.NoError(t, err)
	require.Len(t, reports, 1)
	data, err := os.ReadFile(reports[0])
	require.NoError(t, err)
	var rep struct {
		Status string                                  `json:"status"`
		Steps  []struct{ Name, Status, Reason string } `json:"steps"`
	}
	require.NoError(t, json.Unmarshal(data, &rep))
	assert.Equal(t, "cancelled", rep.Status)
	states := map[string]string{}
	for _, s := range rep.Steps {
		states[s.Name] = s.Status + ": " + s.Reason
	}
	assert.Equal(t, "cancelled: aborted while running", states["ssh:silent"])
	assert.NotContains(t, string(data), "PRIVATE KEY")
}

// lockedBuffer is written by the child's output copier while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
