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
		{"lock", "build-backend", "build-frontend"},
		{"snapshot-pre", "upload-frontend:local"},
		{"rehearse-migrations"},
		{"publish"},
		{"pull:local"},
		{"migrate"},
		{"start-backend:local"},
		{"health-gate:local"},
		{"switch:local"},
		{"verify"},
		{"watch"},
		{"snapshot-post"},
		{"unlock"},
	}, stageNames(p))
	assert.Equal(t, 4, p.MaxWorkers)
	assert.Contains(t, p.OnFailure, "automatic rollback to the pre-deploy snapshot")
}

func TestPlanFollowsTheConfig(t *testing.T) {
	const base = `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/acme/web"%s},
	  "targets": [{"name": "a", "host": "a.example.com"}, {"name": "b", "host": "b.example.com"}]%s}`
	minimal := parse(t, strings.Replace(strings.Replace(base, "%s", "", 1), "%s", `, "snapshots": {"enabled": false}, "rollback": {"auto": false}, "execution": {"parallel": false}`, 1))
	p, err := NewPlan(minimal)
	require.NoError(t, err)
	assert.Equal(t, [][]string{
		{"lock", "build-backend"},
		{"publish"},
		{"pull:a", "pull:b"},
		{"start-backend:a", "start-backend:b"},
		{"health-gate:a", "health-gate:b"},
		{"switch:a", "switch:b"},
		{"verify"},
		{"watch"},
		{"unlock"},
	}, stageNames(p))
	assert.Equal(t, 1, p.MaxWorkers)
	assert.Contains(t, p.Text(), "one step at a time (execution.parallel is false)")
	assert.Contains(t, p.OnFailure, "roll back by hand")

	full := parse(t, strings.Replace(strings.Replace(base, "%s", `, "migrate_command": ["alembic", "upgrade", "head"]`, 1), "%s",
		`, "domains": ["example.com"], "tls": {"enabled": true, "email": "ops@example.com"}, "monitoring": {"enabled": true},
		 "notifications": {"webhook_url": "https://hooks.example.com/x"},
		 "database": {"name": "app", "user": "app", "password": "env:DB", "bootstrap": true, "admin_user": "postgres", "admin_password": "env:PG"}`, 1))
	p, err = NewPlan(full)
	require.NoError(t, err)
	steps := map[string]PlannedStep{}
	for _, s := range p.Stages {
		for _, st := range s.Steps {
			steps[st.Name] = st
		}
	}
	assert.Equal(t, []string{"pull:a", "snapshot-pre", "bootstrap-database"}, steps["migrate"].Needs, "migrations run once, on the first target, after the snapshot")
	assert.Equal(t, []string{"pull:b", "migrate"}, steps["start-backend:b"].Needs)
	assert.Equal(t, []string{"health-gate:a", "certificates"}, steps["switch:a"].Needs)
	assert.Equal(t, []string{"switch:a", "switch:b"}, steps["monitoring"].Needs)
	assert.True(t, steps["notify"].Always)
	assert.True(t, steps["unlock"].Always)
	assert.Equal(t, 3, steps["publish"].Attempts)
	assert.Equal(t, "1m30s", steps["health-gate:a"].Timeout)
}

func TestPlanJSON(t *testing.T) {
	p, err := NewPlan(load(t, "../examples/local.deploy.json"))
	require.NoError(t, err)
	js, err := p.JSON()
	require.NoError(t, err)
	assert.Contains(t, js, `"name": "health-gate:local"`)
	assert.Contains(t, js, `"on_failure": "automatic rollback`)
}
