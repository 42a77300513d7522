package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// prune keeps the release: the dead man's switch is told to keep it, the
// release is marked verified and the journal cleared (one save), then
// releases beyond keep_releases go and the previous backend is stopped
// after the rollback window, in the background on the target.
func (d *Deployment) prune(ctx context.Context, tr *targetRun) error {
	if d.holdingCanary() {
		return pipelines.Skip("%s", canaryHeldNote)
	}
	if tr.noop != "" {
		tr.mu.Lock()
		tr.completed = true
		tr.mu.Unlock()
		return pipelines.Skip("%s", tr.noop)
	}
	// First the switch is disarmed: a kill after this leaves the journal,
	// so the next run undoes the release (the safe side).
	if tr.lease != nil { // none on a worker-only target: no site to put back
		if err := tr.lease.end(); err != nil {
			return fmt.Errorf("keeping the release: %w", err)
		}
	}
	tr.lease = nil
	h, l, st := tr.host, tr.layout, tr.state
	keep := d.req.Config.Backend.KeepReleases
	var kept []Release
	var dirs []string
	var later [][]string // slow cleanups, done on the target in the background
	for i, r := range st.Releases {
		if r.Status == StatusRetired {
			later = append(later, tr.docker.Remove(r.Container))
		}
		if len(st.Releases)-i > keep && r.Status == StatusRetired {
			dirs = append(dirs, l.Release(r.ID))
			later = append(later, tr.docker.RemoveImage(r.Image)) // docker keeps an image a kept release uses
			continue
		}
		if r.ID == d.req.ID {
			r.Verified = true
		}
		kept = append(kept, r)
	}
	dirs = append(dirs, orphans(h, l, st)...)
	script := background(later)
	if prev, ok := st.Previous(); ok {
		script += "; " + stopAfter(tr.docker, l, prev.Container, d.req.Config.Backend.RollbackWindow.D())
	}
	// One session: the old folders go (a state that still lists them as
	// retired after a crash is harmless), the slow clean-up is detached.
	cmd := detachCmd(script)
	if len(dirs) > 0 {
		cmd = remote.Quote(append([]string{"rm", "-rf", "--"}, dirs...)...) + " && " + cmd
	}
	if _, err := h.Run(ctx, "sh", "-c", cmd); err != nil {
		return fmt.Errorf("prune: removing old release folders and scheduling the clean-up: %w", err)
	}
	st.Releases, st.InProgress = kept, nil
	if err := SaveState(h, l, st); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.completed = true
	tr.mu.Unlock()
	return nil
}

// orphans are the release folders no recorded release names (under the
// lock, so no other run's): what a run that died before its journal could
// name the folder left. Unreadable: none.
func orphans(h *remote.Host, l Layout, st *State) []string {
	c, err := h.Files()
	if err != nil {
		return nil
	}
	entries, err := c.ReadDir(l.Releases())
	if err != nil {
		return nil
	}
	known := map[string]bool{}
	for _, r := range st.Releases {
		known[r.ID] = true
	}
	if st.InProgress != nil {
		known[st.InProgress.ID] = true
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] {
			out = append(out, l.Release(e.Name()))
		}
	}
	return out
}

// background renders commands to run one after another, each allowed to
// fail (a retired container already gone, an image still in use): the next
// prune finds what is left and tries again.
func background(cmds [][]string) string {
	parts := []string{"true"}
	for _, c := range cmds {
		parts = append(parts, remote.Quote(c...)+" >/dev/null 2>&1")
	}
	return strings.Join(parts, "; ")
}

// stopAfter renders the delayed stop of the previous backend: after the
// rollback window, unless by then it is serving again (a switch back made
// it current).
func stopAfter(dk Docker, l Layout, container string, window time.Duration) string {
	return fmt.Sprintf(`sleep %d; if [ "$(cat %s 2>/dev/null)" != %s ]; then %s >/dev/null 2>&1; fi`,
		int(window.Seconds()), remote.Quote(l.CurrentContainer()), remote.Quote(container), remote.Quote(dk.Stop(container, 30)...))
}

// detachCmd runs a script on the target in its own session, returning at
// once.
func detachCmd(script string) string {
	return "setsid sh -c " + remote.Quote(script) + " >/dev/null 2>&1 </dev/null &"
}

func (d *Deployment) unlock(ctx context.Context, tr *targetRun) error {
	tr.mu.Lock()
	locked := tr.locked
	tr.mu.Unlock()
	if !locked {
		return pipelines.Skip("the lock was never taken")
	}
	if d.holdingCanary() {
		return pipelines.Skip("the held canary keeps the deploy lock until `lawsker-deploy promote` or `abort`")
	}
	if err := ReleaseLock(ctx, tr.host, tr.layout, d.req.ID, false); err != nil {
		return err
	}
	tr.mu.Lock()
	tr.locked = false
	tr.mu.Unlock()
	return nil
}
