package deploy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The engine API over the SSH connection answers what it is sure of; a
// negative answer or an engine it cannot reach sends the caller to the CLI.
func TestEngineAPIOverSSH(t *testing.T) {
	r := newRig(t)
	v1 := r.image(t, "v1")
	h := connectRig(t, r)
	api := engine{h, Docker{Host: r.docker.Host}}
	ctx := t.Context()
	assert.ErrorIs(t, api.hasImage(ctx, r.repo+"@sha256:"+strings.Repeat("ab", 32)), errAskCLI, "an image the engine lacks")
	_, err := h.Run(ctx, Docker{Host: r.docker.Host}.Pull(v1)...)
	require.NoError(t, err)
	require.NoError(t, api.hasImage(ctx, v1), "pulled: the API says so")

	name := fmt.Sprintf("engine-test-%d", r.portLo)
	spec := ContainerSpec{Name: name, App: "enginetest", Base: r.root + "/enginetest", Release: "r", Image: v1, EnvFile: "/dev/null", Network: "host", PortEnv: "PORT", HostPort: r.portLo, Detach: true}
	_, err = h.Run(ctx, Docker{Host: r.docker.Host}.Run(spec)...)
	require.NoError(t, err)
	defer h.Run(context.WithoutCancel(ctx), Docker{Host: r.docker.Host}.Remove(name)...) //nolint:errcheck // clean-up
	require.NoError(t, api.runningSteadily(ctx, name))
	_, err = h.Run(ctx, Docker{Host: r.docker.Host}.Stop(name, 5)...)
	require.NoError(t, err)
	st, err := api.container(ctx, name)
	require.NoError(t, err)
	assert.False(t, st.Running)
	assert.ErrorIs(t, api.runningSteadily(ctx, name), errAskCLI)
	require.NoError(t, api.start(ctx, name))
	require.NoError(t, api.runningSteadily(ctx, name), "started again through the API")

	running, err := ensureRunning(ctx, h, Docker{Host: r.docker.Host}, name)
	require.NoError(t, err)
	assert.True(t, running)
	_, err = api.container(ctx, "no-such-container")
	assert.ErrorIs(t, err, errAskCLI)
	_, err = ensureRunning(ctx, h, Docker{Host: r.docker.Host}, "no-such-container")
	assert.ErrorContains(t, err, "the previous release's container no-such-container is gone", "the CLI confirms the negative")

	unreachable := engine{h, Docker{Host: "unix:///nonexistent/docker.sock"}}
	assert.ErrorIs(t, unreachable.hasImage(ctx, v1), errAskCLI)
	assert.ErrorIs(t, (engine{h, Docker{Host: "ssh://elsewhere"}}).hasImage(ctx, v1), errAskCLI)
}

func TestCountRepeats(t *testing.T) {
	in := "sample backend v3 listening on 127.0.0.1:1\nERROR health: down\nERROR health: down\nERROR health: down\nbye"
	assert.Equal(t, "sample backend v3 listening on 127.0.0.1:1\nERROR health: down  (3 times)\nbye", CountRepeats(in, 40))
	var many []string
	for i := range 50 {
		many = append(many, fmt.Sprintf("line %d", i))
	}
	got := strings.Split(CountRepeats(strings.Join(many, "\n"), 8), "\n")
	assert.Equal(t, []string{"line 0", "line 1", "... (42 more distinct lines)", "line 44", "line 45", "line 46", "line 47", "line 48", "line 49"}, got)
}
