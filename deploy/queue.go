package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// ErrSuperseded is wrapped when a newer deploy of the app, run with
// --supersede, replaced this one while it waited for the lock.
var ErrSuperseded = errors.New("superseded by a newer deploy")

// queueEntry is a deploy waiting for a target's lock (<base>/.queue/<id>.json),
// rewritten every second while it waits: an entry not rewritten for
// queueStale belongs to a waiter that died, and is ignored.
type queueEntry struct {
	LockInfo
	Queued time.Time `json:"queued"`
}

const (
	queuePoll  = time.Second
	queueStale = 15 * time.Second
)

func queueDir(l Layout) string { return path.Join(l.Base, ".queue") }

// supersededMark is the file a newer deploy writes for a waiting one.
func supersededMark(l Layout, id string) string { return path.Join(queueDir(l), id+".superseded") }

// acquire takes the target's lock: at once, or with Request.LockWait by
// waiting in the target's queue, oldest first, showing the holder while
// it waits. With Request.Supersede it first replaces every older waiting
// deploy (each exits saying which deploy replaced it).
func (d *Deployment) acquire(ctx context.Context, tr *targetRun) error {
	h, l := tr.host, tr.layout
	info := LockInfo{ID: d.req.ID, Who: d.req.Who, When: time.Now().UTC(), Version: d.req.Image, Message: d.req.Message}
	if d.req.LockWait <= 0 {
		return AcquireLock(ctx, h, l, info)
	}
	if err := h.MkdirAll(queueDir(l)); err != nil {
		return fmt.Errorf("lock queue: %w", err)
	}
	me := queueEntry{LockInfo: info, Queued: time.Now().UTC()}
	entry := path.Join(queueDir(l), d.req.ID+".json")
	write := func() error {
		data, _ := json.Marshal(me)
		return h.WriteFile(entry, data, 0o644)
	}
	if err := write(); err != nil {
		return fmt.Errorf("lock queue: %w", err)
	}
	defer func() {
		_ = h.Remove(entry)
		_ = h.Remove(supersededMark(l, d.req.ID))
	}()
	if d.req.Supersede {
		for _, o := range d.waiting(tr) {
			if o.Queued.Before(me.Queued) && o.ID != d.req.ID {
				data, _ := json.Marshal(info)
				if err := h.WriteFile(supersededMark(l, o.ID), data, 0o644); err != nil {
					return fmt.Errorf("lock queue: superseding %s: %w", o.ID, err)
				}
				d.log.Info("superseding a queued deploy", "target", tr.cfg.Name, "deploy", o.ID, "by", o.Who)
			}
		}
	}
	deadline := time.Now().Add(d.req.LockWait)
	shown := ""
	for {
		if data, err := h.ReadFile(supersededMark(l, d.req.ID)); err == nil {
			var by LockInfo
			_ = json.Unmarshal(data, &by)
			return fmt.Errorf("%s: %w: deploy %s (by %s, %s) replaced this queued one (--supersede); nothing was changed", tr.cfg.Name, ErrSuperseded, by.ID, by.Who, orNone(by.Version))
		}
		ahead := ""
		for _, o := range d.waiting(tr) {
			if o.ID != d.req.ID && o.Queued.Before(me.Queued) {
				ahead = o.ID
				break
			}
		}
		if ahead == "" {
			err := AcquireLock(ctx, h, l, info)
			if !errors.Is(err, ErrLocked) {
				return err
			}
		}
		what := "queued behind deploy " + ahead
		if holder, err := ReadLock(h, l); err == nil {
			what = "held by " + holder.String()
			if ahead != "" {
				what += "; deploy " + ahead + " is ahead in the queue"
			}
		}
		if what != shown {
			left := time.Until(deadline).Round(time.Second).String()
			d.log.Info("waiting for the deploy lock (--lock-wait)", "target", tr.cfg.Name, "lock", what, "left", left)
			if d.req.Waiting != nil {
				d.req.Waiting(fmt.Sprintf("%s: waiting for the deploy lock, %s (up to %s more)", tr.cfg.Name, what, left))
			}
			shown = what
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lock: waited %s (--lock-wait) on %s; the lock is still %s: %w", d.req.LockWait, tr.cfg.Name, what, ErrLocked)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(queuePoll):
		}
		if err := write(); err != nil { // the heartbeat
			return fmt.Errorf("lock queue: %w", err)
		}
	}
}

// waiting lists the live entries of a target's queue, oldest first.
func (d *Deployment) waiting(tr *targetRun) []queueEntry {
	fs, err := tr.host.Files()
	if err != nil {
		return nil
	}
	infos, err := fs.ReadDir(queueDir(tr.layout))
	if err != nil {
		return nil
	}
	var out []queueEntry
	for _, fi := range infos {
		if !strings.HasSuffix(fi.Name(), ".json") || time.Since(fi.ModTime()) > queueStale {
			continue
		}
		data, err := tr.host.ReadFile(path.Join(queueDir(tr.layout), fi.Name()))
		if err != nil {
			continue
		}
		var e queueEntry
		if json.Unmarshal(data, &e) == nil && e.ID != "" {
			if _, err := fs.Stat(supersededMark(tr.layout, e.ID)); errors.Is(err, os.ErrNotExist) {
				out = append(out, e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queued.Before(out[j].Queued) })
	return out
}

func orNone(s string) string {
	if s == "" {
		return "no image named"
	}
	return s
}
