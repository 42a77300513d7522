package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// sampleResolver resolves the sample app's one secret.
func sampleResolver() *config.Resolver {
	return &config.Resolver{LookupEnv: func(k string) (string, bool) {
		return map[string]string{"SAMPLE_TOKEN": "token-s3cret-value"}[k], k == "SAMPLE_TOKEN"
	}}
}

func TestFirstReleaseRolledBackThenDeployedAgain(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1 := r.image(t, "v1")
	failVerify := func(req *Request) {
		req.Hooks.Verify = func(context.Context, *remote.Host) error {
			return errors.New("rollback trigger health_check: injected")
		}
	}
	bad := r.deploy(t, cfg, v1, frontend(t, "v1"), failVerify)
	require.Error(t, bad.res.Err())
	o := bad.d.Outcomes()[0]
	assert.Equal(t, RevertSwitchedBack, o.Revert)
	assert.Equal(t, "took the new release down and removed it; it was the first, so nothing serves", o.Reverted)
	st := r.state(t)
	_, hasCurrent := st.Current()
	assert.False(t, hasCurrent, "a release that never passed its verification is not current")
	assert.Empty(t, st.Releases)
	assert.Nil(t, st.InProgress)
	assert.Empty(t, r.running(t), "its container is gone")
	_, err := os.Lstat(r.SitePath("sample"))
	assert.True(t, os.IsNotExist(err), "no site is left for nginx")
	r.unlocked(t)

	again := r.deploy(t, cfg, v1, frontend(t, "v1"))
	require.NoError(t, again.res.Err())
	assert.Empty(t, again.d.Outcomes()[0].NoOp, "the next deploy deploys")
	r.serves(t, "v1")
	cur, ok := r.state(t).Current()
	require.True(t, ok)
	assert.True(t, cur.Verified)
	assert.Empty(t, again.d.Outcomes()[0].Previous, "no previous release is claimed warm")
}

// The dead man's switch: a run whose connection dies after the switch and
// before its release is verified (as kill -9 does) leaves the previous
// release serving by the target's own hand; the next run converges the rest
// and says so.
func TestDeadMansSwitchAfterTheSwitch(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1, v2 := r.image(t, "v1"), r.image(t, "v2")
	require.NoError(t, r.deploy(t, cfg, v1, frontend(t, "v1")).res.Err())

	d, err := Prepare(Request{Config: cfg, Image: v2, FrontendDir: frontend(t, "v2"), Who: "killed@ci", ID: "dead-" + time.Now().Format("150405.000"),
		Resolver: sampleResolver()})
	require.NoError(t, err)
	tr := d.targets[0]
	ctx := t.Context()
	require.NoError(t, d.lock(ctx, tr))
	require.NoError(t, d.prepare(ctx, tr))
	require.NoError(t, d.pull(ctx, tr))
	require.NoError(t, d.start(ctx, tr))
	require.NoError(t, d.health(ctx, tr))
	require.NoError(t, d.upload(ctx, tr))
	require.NoError(t, d.switchOver(ctx, tr))
	r.serves(t, "v2")
	cur, _ := r.state(t).Current()
	assert.False(t, cur.Verified, "switched to, not yet verified")

	d.Close() // the connection dies, as with kill -9
	r.serves(t, "v1")

	h := connectRig(t, r)
	require.NoError(t, ReleaseLock(ctx, h, tr.layout, "", true))
	next := r.deploy(t, cfg, v1, frontend(t, "v1"))
	require.NoError(t, next.res.Err())
	o := next.d.Outcomes()[0]
	assert.Contains(t, o.Converged, "undid the interrupted run "+d.req.ID)
	assert.Contains(t, o.Converged, "served but was never verified")
	assert.Contains(t, o.NoOp, "already serves "+v1, "v1 is current again")
	assert.NotContains(t, r.running(t), tr.container)
	_, err = os.Stat(filepath.Join(r.root, "sample", "releases", d.req.ID))
	assert.True(t, os.IsNotExist(err))
	assert.Nil(t, r.state(t).InProgress)
	r.unlocked(t)
}

func TestBadStateFileChangesNothing(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	v1 := r.image(t, "v1")
	stateFile := filepath.Join(r.root, "sample", "state.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(stateFile), 0o755))
	for name, tc := range map[string]struct{ content, want string }{
		"damaged":   {`{"format": 2, "app": "sample", "releases": [}`, stateFile + " is damaged or truncated"},
		"truncated": {`{"format": 2, "app": "sample", "rel`, stateFile + " is damaged or truncated"},
		"newer":     {`{"format": 9, "app": "sample", "releases": []}`, stateFile + " has format 9, newer than this lawsker-deploy reads (2): nothing was changed; upgrade lawsker-deploy"},
		"status":    {`{"format": 2, "app": "sample", "releases": [{"id": "x", "status": "serving"}]}`, stateFile + `: releases[0] has id "x" and status "serving"`},
		"undo":      {`{"format": 2, "app": "sample", "releases": [], "in_progress": {"id": "x", "undo": [{"kind": "teleport"}]}}`, `in_progress.undo[0] has kind "teleport"`},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(stateFile, []byte(tc.content), 0o644))
			res := r.deploy(t, cfg, v1, frontend(t, "v1"))
			err := stepErr(res.res, "prepare:local")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "nothing was changed")
			data, err := os.ReadFile(stateFile)
			require.NoError(t, err)
			assert.Equal(t, tc.content, string(data), "the file is untouched")
			entries, _ := os.ReadDir(filepath.Join(r.root, "sample", "releases"))
			assert.Empty(t, entries, "no release folder")
			assert.Empty(t, r.running(t))
			s, _ := res.res.Step("revert:local")
			assert.Equal(t, pipelines.Skipped, s.State)
			r.unlocked(t)
		})
	}
}
