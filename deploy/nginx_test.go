package deploy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// A worker that has not yet seen the reload signal (here: stopped, as one
// starved of CPU is) still accepts connections with the old
// configuration, and it has not yet renamed itself "shutting down". The
// drain knows the old workers by the pids its reload wrote down: it waits
// for the stopped one, and ends once that one took the signal.
func TestDrainWaitsForAWorkerThatHasNotSeenTheReload(t *testing.T) {
	ng := testenv.StartNginx(t, "")
	n := Nginx{cfg: config.Nginx{Binary: testenv.Bin(t, "nginx"), Prefix: ng.Dir, Config: ng.Conf}, mark: filepath.Join(t.TempDir(), "workers")}
	pidFile := strings.TrimSpace(runLocal(t, n.PidFile()...))
	require.Equal(t, filepath.Join(ng.Dir, "nginx.pid"), pidFile, "the pid directive of nginx -T")
	n = n.withPidFile(pidFile)
	master := strings.TrimSpace(string(mustRead(t, pidFile)))
	old := strings.Fields(runLocal(t, "pgrep", "-P", master))
	require.Len(t, old, 1, "worker_processes 1")
	worker, err := strconv.Atoi(old[0])
	require.NoError(t, err)

	require.NoError(t, syscall.Kill(worker, syscall.SIGSTOP))
	continued := false
	defer func() {
		if !continued {
			_ = syscall.Kill(worker, syscall.SIGCONT)
		}
	}()
	runLocal(t, n.Reload()...)
	assert.Equal(t, old[0]+"\n", string(mustRead(t, n.mark)), "the reload wrote down the worker from before it")

	err = exec.CommandContext(t.Context(), n.Drain()[0], n.Drain()[1:]...).Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "the drain must not end while the old worker lives: %v", err)
	assert.Equal(t, 3, ee.ExitCode(), "2 s, then exit 3")

	require.NoError(t, syscall.Kill(worker, syscall.SIGCONT))
	continued = true
	// Once running, the worker takes the signal and exits (it has no
	// request left); a drain may still see it for a moment.
	var derr error
	for range 5 {
		if derr = exec.CommandContext(t.Context(), n.Drain()[0], n.Drain()[1:]...).Run(); derr == nil {
			break
		}
	}
	require.NoError(t, derr, "the old worker took the reload: the drain ends")
	cmdline, err := os.ReadFile(filepath.Join("/proc", old[0], "cmdline"))
	assert.True(t, os.IsNotExist(err) || strings.Contains(string(cmdline), "shutting down"), "the old worker is gone or shutting down: %q", cmdline)
}

// Without the pid file, a reload is nginx's own and the drain waits for
// nothing (it cannot know).
func TestReloadWithoutThePidFile(t *testing.T) {
	n := Nginx{cfg: config.Nginx{Binary: "/usr/sbin/nginx"}, mark: "/srv/app/.mark"}
	assert.Equal(t, []string{"/usr/sbin/nginx", "-s", "reload"}, n.Reload())
	assert.NoError(t, exec.CommandContext(t.Context(), n.Drain()[0], n.Drain()[1:]...).Run())
}

func runLocal(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), argv[0], argv[1:]...).Output()
	require.NoError(t, err, "%v", argv)
	return string(out)
}

// nginx's map has no comparison: beforeRE spells "a second before t" digit
// by digit, and must agree with < for every $msec around t.
func TestBeforeREIsLessThan(t *testing.T) {
	for _, until := range []int64{1764748923, 1764748900, 1800000000, 1764748999, 1000000001} {
		re := regexp.MustCompile(`^(` + beforeRE(until) + `)\.`)
		for _, d := range []int64{-100000, -86400, -3601, -61, -10, -1, 0, 1, 9, 60, 3600, 86400, 99999999} {
			sec := until + d
			msec := fmt.Sprintf("%d.%03d", sec, 123)
			assert.Equal(t, sec < until, re.MatchString(msec), "until %d, $msec %s", until, msec)
		}
	}
}

// A client connection that has not sent its request keeps an old worker
// "shutting down" until the client closes it (a minute, say): the drain
// does not wait for that, only for the reload to be taken.
func TestDrainDoesNotWaitForALingeringConnection(t *testing.T) {
	ng := testenv.StartNginx(t, "")
	n := Nginx{cfg: config.Nginx{Binary: testenv.Bin(t, "nginx"), Prefix: ng.Dir, Config: ng.Conf}, mark: filepath.Join(t.TempDir(), "workers")}
	n = n.withPidFile(strings.TrimSpace(runLocal(t, n.PidFile()...)))
	master := strings.TrimSpace(string(mustRead(t, n.pidFile)))
	old := strings.TrimSpace(runLocal(t, "pgrep", "-P", master))
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ng.Port))
	require.NoError(t, err)
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // accepted by the worker
	runLocal(t, n.Reload()...)
	require.NoError(t, exec.CommandContext(t.Context(), n.Drain()[0], n.Drain()[1:]...).Run(), "the reload was taken")
	cmdline, err := os.ReadFile(filepath.Join("/proc", old, "cmdline"))
	require.NoError(t, err, "the old worker lingers for the open connection")
	assert.Contains(t, string(cmdline), "shutting down")
}
