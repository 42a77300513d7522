package checks

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestSystemResourcesOverSSH(t *testing.T) {
	h := sshTarget(t)
	r := run1(t, Check{Name: "system", Category: Performance, Run: System(h, "/", SystemThresholds{CPU: 100, Memory: 100, Disk: 100})})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Regexp(t, `^CPU \d+% \(limit 100%\), memory \d+% \(limit 100%\), disk \d+% of [0-9.]+ GiB at / \(limit 100%\)$`, r.Message)
	r = run1(t, Check{Name: "system", Category: Performance, Run: System(h, "/", SystemThresholds{CPU: 100, Memory: 0, Disk: 0})})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "memory and disk over the limit: ")
}

// sshTarget is a connection to a throwaway sshd, closed when the test ends.
func sshTarget(t *testing.T) *remote.Host {
	s := testenv.StartSSHD(t)
	key, err := os.ReadFile(s.KeyPath)
	require.NoError(t, err)
	h, err := remote.Connect(t.Context(), remote.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts}, 1)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}
