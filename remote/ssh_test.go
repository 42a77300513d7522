package remote

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func endpoint(t *testing.T, s *testenv.SSHD) Endpoint {
	key, err := os.ReadFile(s.KeyPath)
	require.NoError(t, err)
	return Endpoint{Name: "test", Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts, ConnectTimeout: 5 * time.Second}
}

func TestDialRunsACommand(t *testing.T) {
	s := testenv.StartSSHD(t)
	c, err := Dial(t.Context(), endpoint(t, s))
	require.NoError(t, err, s.Log())
	defer c.Close()
	sess, err := c.NewSession()
	require.NoError(t, err)
	out, err := sess.Output("echo reached")
	require.NoError(t, err)
	assert.Equal(t, "reached\n", string(out))
}

func TestDialRefusesChangedHostKey(t *testing.T) {
	s := testenv.StartSSHD(t)
	e := endpoint(t, s)
	e.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	const other = "AAAAC3NzaC1lZDI1NTE5AAAAIKr8lyOVJ/yAzeFEXUWgcS6Nqq6UnKLu4Hc9Y6zXF0Oc"
	require.NoError(t, os.WriteFile(e.KnownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 %s\n", s.Port, other)), 0o600))
	_, err := Dial(t.Context(), e)
	require.ErrorIs(t, err, ErrHostKeyChanged)
	msg := err.Error()
	assert.Contains(t, msg, "host key changed: the server presented ssh-ed25519 SHA256:")
	assert.Contains(t, msg, "but known_hosts records ssh-ed25519 SHA256:")
	assert.Contains(t, msg, e.KnownHosts+":1")
	assert.Equal(t, 2, strings.Count(msg, "SHA256:"), "both fingerprints are shown")
}

func TestDialUnknownHostKeyAndTrustOnFirstUse(t *testing.T) {
	s := testenv.StartSSHD(t)
	e := endpoint(t, s)
	e.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(e.KnownHosts, nil, 0o600))
	_, err := Dial(t.Context(), e)
	require.ErrorIs(t, err, ErrHostKeyUnknown)
	assert.Contains(t, err.Error(), fmt.Sprintf("[127.0.0.1]:%d has no entry in", s.Port))

	e.TrustOnFirstUse = true
	c, err := Dial(t.Context(), e)
	require.NoError(t, err)
	c.Close()
	recorded, err := os.ReadFile(e.KnownHosts)
	require.NoError(t, err)
	assert.Contains(t, string(recorded), s.HostKey)

	// Recorded now, so a later connection is checked against it.
	e.TrustOnFirstUse = false
	c, err = Dial(t.Context(), e)
	require.NoError(t, err)
	c.Close()
}

func TestDialMissingKnownHostsFile(t *testing.T) {
	s := testenv.StartSSHD(t)
	e := endpoint(t, s)
	e.KnownHosts = filepath.Join(t.TempDir(), "absent")
	_, err := Dial(t.Context(), e)
	assert.ErrorContains(t, err, "known_hosts file "+e.KnownHosts+" does not exist: add the host's key")
}

func TestDialWrongKey(t *testing.T) {
	s := testenv.StartSSHD(t)
	other := testenv.StartSSHD(t) // its user key is not authorised on s
	e := endpoint(t, s)
	e.PrivateKey, _ = os.ReadFile(other.KeyPath)
	_, err := Dial(t.Context(), e)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "authentication failed: the server accepted none of the offered keys")
	var ne *NetError
	assert.False(t, errors.As(err, &ne), "not a network error: no retry")

	e.PrivateKey = []byte("not a key")
	_, err = Dial(t.Context(), e)
	assert.ErrorContains(t, err, "the private key cannot be read")
	assert.NotContains(t, err.Error(), "not a key")
}

func TestDialUnreachableIsANetErrorWithinTheTimeout(t *testing.T) {
	e := Endpoint{Host: "127.0.0.1", Port: testenv.FreePort(t), User: "deploy", PrivateKey: mustKey(t), KnownHosts: writeEmpty(t), ConnectTimeout: time.Second}
	start := time.Now()
	_, err := Dial(t.Context(), e)
	var ne *NetError
	require.ErrorAs(t, err, &ne)
	assert.Contains(t, err.Error(), "connection refused")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func mustKey(t *testing.T) []byte {
	s := filepath.Join(t.TempDir(), "k")
	testenv.MustRun(t, testenv.Bin(t, "ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", s)
	b, err := os.ReadFile(s)
	require.NoError(t, err)
	return b
}

func writeEmpty(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	return p
}
