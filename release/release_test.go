package release

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/rollout"
)

func load(t *testing.T, execution string) *config.Config {
	l, err := config.Parse([]byte(`{"version": 1, "app": "web", "backend": {"image": "ghcr.io/acme/web"},
	  "targets": [{"name": "a", "host": "a.example.com"}], "execution": `+execution+`}`), config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

// Both front doors (the CLI and the Dagger module) run releases through
// Run, so this is the one place their scheduling is decided.
func TestOptionsComeFromTheConfiguration(t *testing.T) {
	abort := make(chan struct{})
	for name, tc := range map[string]struct {
		execution string
		want      pipelines.Options
	}{
		"parallel": {`{"max_workers": 3, "drain": "45s", "step_timeout": "7m"}`,
			pipelines.Options{MaxWorkers: 3, ContinueOnFailure: true, Drain: 45 * time.Second, DefaultTimeout: 7 * time.Minute}},
		"serial": {`{"parallel": false}`,
			pipelines.Options{MaxWorkers: 3, Serial: true, ContinueOnFailure: true, Drain: 30 * time.Second, DefaultTimeout: 10 * time.Minute}},
	} {
		t.Run(name, func(t *testing.T) {
			got := Options(load(t, tc.execution), Request{Abort: abort})
			assert.Equal(t, (<-chan struct{})(abort), got.Abort, "an interrupt's abort reaches the run")
			got.Abort = nil
			assert.Equal(t, tc.want, got)
		})
	}
}

// A failed step does not stop the Always steps (revert, unlock) nor what
// does not depend on it, and the outcome comes back typed.
func TestRunFinishesWhateverFailed(t *testing.T) {
	var reverted, unlocked atomic.Bool
	g, err := pipelines.New(
		pipelines.Step{Name: "switch", Run: func(context.Context) error { return errors.New("nginx -t refused") }},
		pipelines.Step{Name: "revert", Needs: []string{"switch"}, Always: true, Timeout: time.Second, Run: func(context.Context) error { reverted.Store(true); return nil }},
		pipelines.Step{Name: "unlock", Needs: []string{"revert"}, Always: true, Timeout: time.Second, Run: func(context.Context) error { unlocked.Store(true); return nil }},
	)
	require.NoError(t, err)
	cfg := load(t, `{}`)
	r := Run(t.Context(), Request{Config: cfg, ID: "d1", Who: "me@host"}, Release{Kind: KindDeploy, Graph: g,
		Finish: func(res *pipelines.Result) ([]deploy.TargetOutcome, rollout.Outcome, error) {
			return []deploy.TargetOutcome{{Target: "a", Revert: deploy.RevertSwitchedBack}}, rollout.Outcome{}, res.Err()
		}})
	require.Error(t, r.Err)
	assert.True(t, reverted.Load())
	assert.True(t, unlocked.Load())
	assert.Equal(t, deploy.RevertSwitchedBack, r.Targets[0].Revert)
	assert.Empty(t, r.Notifications, "no channel configured")
	s, _ := r.Run.Step("unlock")
	assert.Equal(t, pipelines.Succeeded, s.State)
}
