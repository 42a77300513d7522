package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"github.com/lawsker/lawsker-deploy/remote"
)

// LockInfo is who holds the deploy lock of an app on a target.
type LockInfo struct {
	ID      string    `json:"id"`
	Who     string    `json:"who"`
	When    time.Time `json:"when"`
	Version string    `json:"version,omitempty"` // image being deployed
	Message string    `json:"message,omitempty"`
}

func (i LockInfo) String() string {
	s := fmt.Sprintf("deploy %s by %s since %s", i.ID, i.Who, i.When.UTC().Format(time.RFC3339))
	if i.Version != "" {
		s += " (" + i.Version + ")"
	}
	if i.Message != "" {
		s += ": " + i.Message
	}
	return s
}

// ErrLocked is wrapped when another deploy holds the lock.
var ErrLocked = errors.New("deploy lock held")

// AcquireLock takes the lock atomically (an SFTP mkdir succeeds for one
// caller only), then records who holds it: no shell session, so it costs a
// few file operations. A held lock fails at once, naming the holder.
func AcquireLock(ctx context.Context, h *remote.Host, l Layout, info LockInfo) error {
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := h.MkdirAll(l.Base); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	err := h.Mkdir(l.LockDir())
	if errors.Is(err, os.ErrExist) {
		holder, herr := ReadLock(h, l)
		if herr != nil {
			return fmt.Errorf("lock: %s is locked (%s exists) and its holder cannot be read (%v): %w; if no deploy is running, `lawsker-deploy lock release --force`", h.Endpoint.Addr(), l.LockDir(), herr, ErrLocked)
		}
		return fmt.Errorf("lock: %s is locked by %s: %w; if that deploy is dead, `lawsker-deploy lock release --force`", h.Endpoint.Addr(), holder, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := h.WriteFile(path.Join(l.LockDir(), "lock.json"), data, 0o644); err != nil {
		return fmt.Errorf("lock: recording the holder: %w", err)
	}
	return nil
}

// ReadLock returns the holder; a missing lock wraps os.ErrNotExist.
func ReadLock(h *remote.Host, l Layout) (LockInfo, error) {
	data, err := h.ReadFile(path.Join(l.LockDir(), "lock.json"))
	if err != nil {
		return LockInfo{}, err
	}
	var info LockInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return LockInfo{}, fmt.Errorf("lock.json: %w", err)
	}
	return info, nil
}

// ReleaseLock removes the lock if id holds it (or force is set). Releasing
// a lock that is not there is not an error.
func ReleaseLock(ctx context.Context, h *remote.Host, l Layout, id string, force bool) error {
	info, err := ReadLock(h, l)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No lock.json: either no lock, or one whose holder died between
		// mkdir and writing lock.json; only force removes the latter.
		if !force {
			if _, statErr := h.Run(ctx, "test", "-d", l.LockDir()); statErr == nil {
				return fmt.Errorf("unlock: %s has a lock with no holder recorded; `lawsker-deploy lock release --force` removes it", h.Endpoint.Addr())
			}
			return nil
		}
	case err != nil && !force:
		return fmt.Errorf("unlock: %w", err)
	case err == nil && info.ID != id && !force:
		return fmt.Errorf("unlock: %s is held by %s, not by deploy %s; not released", h.Endpoint.Addr(), info, id)
	}
	// Over SFTP: no shell session needed.
	if err := h.Remove(path.Join(l.LockDir(), "lock.json")); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	if err := h.Remove(l.LockDir()); err != nil {
		return fmt.Errorf("unlock: %w (remove %s by hand if it holds stray files)", err, l.LockDir())
	}
	return nil
}
