package deploy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
)

func load(t *testing.T, path string) *config.Config {
	t.Helper()
	l, err := config.LoadFile(path, config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func parse(t *testing.T, js string) *config.Config {
	t.Helper()
	l, err := config.Parse([]byte(js), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func stageNames(p *Plan) [][]string {
	var out [][]string
	for _, s := range p.Stages {
		var names []string
		for _, st := range s.Steps {
			names = append(names, st.Name)
		}
		out = append(out, names)
	}
	return out
}

func TestPlanOfTheLocalExample(t *testing.T) {
	p, err := NewPlan(load(t, "../examples/local.deploy.json"))
	require.NoError(t, err)
	assert.Equal(t, [][]string{
		{"lock:local"},
		{"prepare:local"},
		{"pull:local", "snapshot-before", "log-store:local", "upload-frontend:local"},
		{"migrate"},
		{"start-backend:local"},
		{"health-gate:local"},
		{"switch:local"},
		{"verify:local"},
		{"monitoring"},
		{"verify-release"},
		{"prune:local"},
		{"snapshot-after"},
		{"swap-database"},
		{"revert:local"},
		{"restore-database"},
		{"unlock:local"},
	}, stageNames(p))
	assert.Equal(t, 4, p.MaxWorkers)
}

func TestPlanFollowsTheConfig(t *testing.T) {
	cfg := parse(t, `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/acme/web"},
	  "targets": [{"name": "a", "host": "a.example.com"}, {"name": "b", "host": "b.example.com"}],
	  "snapshots": {"enabled": false}, "execution": {"parallel": false}}`)
	p, err := NewPlan(cfg)
	require.NoError(t, err)
	assert.Equal(t, [][]string{
		{"lock:a", "lock:b"},
		{"prepare:a", "prepare:b"},
		{"pull:a", "pull:b"},
		{"start-backend:a", "start-backend:b"},
		{"health-gate:a", "health-gate:b"},
		{"switch:a", "switch:b"},
		{"verify:a", "verify:b"},
		{"verify-release"},
		{"prune:a", "prune:b"},
		{"revert:a", "revert:b"},
		{"unlock:a", "unlock:b"},
	}, stageNames(p), "no frontend, no migrations, no snapshots: those steps are absent")
	assert.Equal(t, 1, p.MaxWorkers)
	assert.Contains(t, p.Text(), "one step at a time (execution.parallel is false)")

	migrating := parse(t, strings.Replace(`{"version": 1, "app": "web", "backend": {"image": "ghcr.io/acme/web", "migrate_command": ["alembic", "upgrade", "head"], "routes": ["/api/"]},
	  "targets": [{"name": "a", "host": "a.example.com"}, {"name": "b", "host": "b.example.com"}], "frontend": {},
	  "domains": ["example.com"], "tls": {"enabled": true, "email": "ops@example.com"}, "monitoring": {"enabled": true}}`, "\n", " ", -1))
	p, err = NewPlan(migrating)
	require.NoError(t, err)
	steps := map[string]PlannedStep{}
	for _, s := range p.Stages {
		for _, st := range s.Steps {
			steps[st.Name] = st
		}
	}
	assert.Equal(t, []string{"pull:a", "snapshot-before", "prepare:a", "prepare:b"}, steps["migrate"].Needs, "migrations run once, on the first target, after the pre-deploy snapshot")
	assert.Equal(t, []string{"pull:b", "migrate", "snapshot-before", "log-store:b", "prepare:a", "prepare:b"}, steps["start-backend:b"].Needs,
		"the log store runs before the backend, so its first lines are kept; nothing starts before every target is locked and prepared")
	assert.Equal(t, []string{"prepare:b"}, steps["log-store:b"].Needs)
	assert.Equal(t, []string{"verify:a", "verify:b"}, steps["certificates"].Needs, "TLS: certificates once every target serves the release")
	assert.Equal(t, []string{"certificates"}, steps["monitoring"].Needs, "monitoring once the certificates are in")
	assert.Equal(t, []string{"monitoring"}, steps["verify-release"].Needs)
	assert.Equal(t, []string{"prune:a", "snapshot-after"}, steps["revert:a"].Needs)
	assert.Equal(t, []string{"health-gate:a", "upload-frontend:a"}, steps["switch:a"].Needs)
	assert.True(t, steps["revert:a"].Always)
	assert.True(t, steps["unlock:b"].Always)
	assert.Equal(t, 3, steps["lock:a"].Attempts)
}

func TestPlanJSON(t *testing.T) {
	p, err := NewPlan(load(t, "../examples/local.deploy.json"))
	require.NoError(t, err)
	js, err := p.JSON()
	require.NoError(t, err)
	assert.Contains(t, js, `"name": "health-gate:local"`)
	assert.Contains(t, js, `"name": "snapshot-before"`)
	assert.Contains(t, js, "the database is restored from the pre-deploy snapshot")
}

func TestPrepareRefusesBadRequests(t *testing.T) {
	cfg := load(t, "../examples/local.deploy.json")
	good := "127.0.0.1:5000/sample/backend@sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Image: "127.0.0.1:5000/sample/backend:latest", NoSnapshot: true}, `--backend-image "127.0.0.1:5000/sample/backend:latest" must be pinned by digest: 127.0.0.1:5000/sample/backend@sha256:<64 hex digits>`},
		{Request{Image: "ghcr.io/evil/backend@sha256:" + strings.Repeat("a", 64), NoSnapshot: true}, "is from ghcr.io/evil/backend, but backend.image is 127.0.0.1:5000/sample/backend"},
		{Request{Image: good}, "snapshots.enabled: this deploy has no pre- and post-deploy snapshot steps"},
		{Request{Image: good, NoSnapshot: true}, "the configuration has a frontend: pass --frontend-dir with its built files"},
		{Request{Image: good, NoSnapshot: true, FrontendDir: t.TempDir()}, "has no index.html; is it the build output?"},
	} {
		tc.req.Config = cfg
		_, err := Prepare(tc.req)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}
