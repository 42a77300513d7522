package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func connect(t *testing.T) (*Host, *testenv.SSHD) {
	t.Helper()
	s := testenv.StartSSHD(t)
	h, err := Connect(t.Context(), endpoint(t, s), 3)
	require.NoError(t, err, s.Log())
	t.Cleanup(func() { h.Close() })
	return h, s
}

func TestRunPassesHostileArgumentsVerbatim(t *testing.T) {
	h, _ := connect(t)
	out, err := h.Run(t.Context(), append([]string{"printf", "%s\\0"}, hostile...)...)
	require.NoError(t, err)
	assert.Equal(t, hostile, strings.Split(strings.TrimSuffix(out, "\x00"), "\x00"))
}

func TestRunReportsExitCodeAndStderr(t *testing.T) {
	h, _ := connect(t)
	_, err := h.Run(t.Context(), "sh", "-c", "echo to-stderr >&2; exit 3")
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 3, re.ExitCode)
	assert.Equal(t, "to-stderr", re.Stderr)
	assert.Contains(t, err.Error(), "`sh -c 'echo to-stderr >&2; exit 3'` exited 3: to-stderr")
}

func TestRunInputAndCancellation(t *testing.T) {
	h, _ := connect(t)
	out, err := h.RunInput(t.Context(), strings.NewReader("secret-on-stdin"), "cat")
	require.NoError(t, err)
	assert.Equal(t, "secret-on-stdin", out)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = h.Run(ctx, "sleep", "30")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second, "Run returns when its context ends")
}

func TestFilesAndSymlinks(t *testing.T) {
	h, s := connect(t)
	dir := filepath.Join(s.Dir, "app")
	p := filepath.Join(dir, "sub", "state.json")
	require.NoError(t, h.WriteFile(p, []byte(`{"v":1}`), 0o600))
	require.NoError(t, h.WriteFile(p, []byte(`{"v":2}`), 0o600))
	data, err := h.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, `{"v":2}`, string(data))
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, _ := os.ReadDir(filepath.Dir(p))
	assert.Len(t, entries, 1, "no temporary files left")

	_, err = h.ReadFile(filepath.Join(dir, "absent"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	link := filepath.Join(dir, "current")
	got, err := h.Readlink(link)
	require.NoError(t, err)
	assert.Equal(t, "", got)
	require.NoError(t, h.Symlink(t.Context(), "releases/one", link))
	require.NoError(t, h.Symlink(t.Context(), "releases/two", link))
	got, err = h.Readlink(link)
	require.NoError(t, err)
	assert.Equal(t, "releases/two", got)
}

func TestDialTCPThroughTheTarget(t *testing.T) {
	h, _ := connect(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			fmt.Fprintln(c, "hello through the tunnel")
			c.Close()
		}
	}()
	c, err := h.DialTCP(t.Context(), l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "hello through the tunnel\n", line)

	_, err = h.DialTCP(t.Context(), fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	assert.Error(t, err)
}

func TestConnectRetriesOnlyNetworkErrors(t *testing.T) {
	e := Endpoint{Host: "127.0.0.1", Port: testenv.FreePort(t), User: "deploy", PrivateKey: mustKey(t), KnownHosts: writeEmpty(t), ConnectTimeout: time.Second}
	start := time.Now()
	_, err := Connect(t.Context(), e, 3)
	var ne *NetError
	require.ErrorAs(t, err, &ne)
	assert.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond, "three attempts with pauses of 0.5 s and 1 s")

	s := testenv.StartSSHD(t)
	bad := endpoint(t, s)
	bad.KnownHosts = writeEmpty(t)
	start = time.Now()
	_, err = Connect(t.Context(), bad, 3)
	assert.True(t, errors.Is(err, ErrHostKeyUnknown))
	assert.Less(t, time.Since(start), 1500*time.Millisecond, "a host key problem is not retried")
}
