package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
)

// The deploy queue: while a deploy holds the lock, a second waits with
// --lock-wait; a third with --supersede replaces it (it ends saying which
// deploy replaced it, having changed nothing); a fourth queues behind the
// third. Once the lock is free the third deploys, then the fourth.
func TestDeployQueueWaitsAndSupersedes(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	l := NewLayout(cfg, cfg.Primary())
	ctx := t.Context()
	h, err := connectTarget(ctx, r.sshd, mustRead(t, r.sshd.KeyPath))
	require.NoError(t, err)
	defer h.Close()
	holder := LockInfo{ID: "20261206_000000_aaaaaa", Who: "someone@laptop", When: time.Now().UTC(), Message: "a long deploy"}
	require.NoError(t, AcquireLock(ctx, h, l, holder))

	var waitMu sync.Mutex
	var waits []string
	start := func(version string, supersede bool) (<-chan *pipelines.Result, string) {
		id := report.NewID(time.Now())
		d, err := Prepare(Request{Config: cfg, Image: r.image(t, version), FrontendDir: frontend(t, version), Who: "ci@" + version, ID: id,
			Resolver: sampleResolver(), LockWait: time.Minute, Supersede: supersede, Waiting: func(msg string) {
				waitMu.Lock()
				waits = append(waits, version+": "+msg)
				waitMu.Unlock()
			}})
		require.NoError(t, err)
		t.Cleanup(d.Close)
		ch := make(chan *pipelines.Result, 1)
		go func() { ch <- pipelines.Run(context.Background(), d.Graph(), pipelines.Options{MaxWorkers: 4}) }()
		queued := filepath.Join(r.root, "sample", ".queue", id+".json")
		require.Eventually(t, func() bool { _, err := os.Stat(queued); return err == nil }, 20*time.Second, 20*time.Millisecond, "%s waits in the queue", version)
		return ch, id
	}
	second, _ := start("v2", false)
	time.Sleep(1100 * time.Millisecond) // queued in order
	third, thirdID := start("v3", true)

	var res *pipelines.Result
	select {
	case res = <-second:
	case <-time.After(20 * time.Second):
		t.Fatal("the superseded deploy did not end")
	}
	err = res.Err()
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrSuperseded), "%v", err)
	assert.Contains(t, err.Error(), "deploy "+thirdID+" (by ci@v3")
	assert.Contains(t, err.Error(), "nothing was changed")
	time.Sleep(1100 * time.Millisecond)
	fourth, _ := start("v4", false)
	select {
	case res := <-third:
		t.Fatalf("the third deploy ended while the lock was held: %v", res.Err())
	default:
	}

	require.NoError(t, ReleaseLock(ctx, h, l, holder.ID, false))
	res = <-third
	require.NoError(t, res.Err(), "the first in the queue deploys once the lock is free")
	res = <-fourth
	require.NoError(t, res.Err(), "then the one behind it")
	r.serves(t, "v4")
	var ids []string
	for _, rel := range r.state(t).Releases {
		ids = append(ids, rel.Who)
	}
	assert.Equal(t, []string{"ci@v3", "ci@v4"}, ids, "v2 never deployed; v3 before v4")
	waitMu.Lock()
	assert.Contains(t, strings.Join(waits, "\n"), "v2: local: waiting for the deploy lock, held by deploy 20261206_000000_aaaaaa by someone@laptop", "the holder is shown while waiting")
	waitMu.Unlock()
	r.unlocked(t)
	entries, _ := os.ReadDir(filepath.Join(r.root, "sample", ".queue"))
	assert.Empty(t, entries, "the queue is empty")
}
