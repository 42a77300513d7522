package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func preflightConfig(t *testing.T, s *testenv.SSHD, registry, knownHosts string) *config.Config {
	return parse(t, fmt.Sprintf(`{"version": 1, "app": "web",
	  "targets": [{"name": "local", "host": "127.0.0.1", "ssh": {"user": %q, "port": %d, "key": "file:%s", "known_hosts": %q, "connect_timeout": "2s"}}],
	  "backend": {"image": "%s/web/backend", "secret_env": {"TOKEN": "env:PREFLIGHT_TOKEN"}}}`,
		s.User, s.Port, s.KeyPath, knownHosts, registry))
}

func runPreflight(t *testing.T, cfg *config.Config, env map[string]string) map[string]pipelines.StepResult {
	res := &config.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	g, err := Preflight(cfg, res, PreflightOptions{})
	require.NoError(t, err)
	out := pipelines.Run(t.Context(), g, pipelines.Options{MaxWorkers: 4, ContinueOnFailure: true})
	m := map[string]pipelines.StepResult{}
	for _, s := range out.Steps {
		m[s.Name] = s
	}
	return m
}

func TestPreflightPassesAgainstRealServers(t *testing.T) {
	s := testenv.StartSSHD(t)
	reg := testenv.StartRegistry(t)
	got := runPreflight(t, preflightConfig(t, s, reg.Addr, s.KnownHosts), map[string]string{"PREFLIGHT_TOKEN": "token-value-123"})
	for _, name := range []string{"secrets", "ssh:local", "registry"} {
		assert.Equal(t, pipelines.Succeeded, got[name].State, "%s: %v", name, got[name].Err)
	}
}

func TestPreflightReportsEachProblem(t *testing.T) {
	s := testenv.StartSSHD(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr8lyOVJ/yAzeFEXUWgcS6Nqq6UnKLu4Hc9Y6zXF0Oc\n", s.Port)), 0o600))
	closedPort := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	got := runPreflight(t, preflightConfig(t, s, closedPort, kh), nil)

	assert.Equal(t, pipelines.Failed, got["secrets"].State)
	assert.EqualError(t, got["secrets"].Err, "config: backend.secret_env.TOKEN: env:PREFLIGHT_TOKEN: environment variable PREFLIGHT_TOKEN is not set: secret not available")

	assert.Equal(t, pipelines.Failed, got["ssh:local"].State)
	assert.ErrorContains(t, got["ssh:local"].Err, "host key changed")
	assert.Equal(t, 1, got["ssh:local"].Attempts, "a changed host key is not retried")

	assert.Equal(t, pipelines.Failed, got["registry"].State)
	assert.ErrorContains(t, got["registry"].Err, "connection refused")
	assert.Equal(t, 3, got["registry"].Attempts, "network errors are retried")
}
