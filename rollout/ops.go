package rollout

import (
	"context"
	"fmt"
	"io"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// Store is the snapshot store with the first target it is reached through
// (snapshots are taken and restored there).
type Store struct {
	Host *remote.Host
	snapshots.Store
}

// Close ends the connection and releases the store.
func (s *Store) Close() {
	if c, ok := s.Store.(io.Closer); ok {
		_ = c.Close()
	}
	s.Host.Close()
}

// TargetError is a failure to reach or read the target (as opposed to
// input that cannot work: a bad store, an unknown snapshot, a bad plan).
type TargetError struct{ Err error }

func (e *TargetError) Error() string { return e.Err.Error() }
func (e *TargetError) Unwrap() error { return e.Err }

// OpenStore connects to the first target and opens the configured store.
func OpenStore(ctx context.Context, cfg *config.Config, res *config.Resolver) (*Store, error) {
	e, err := deploy.Endpoint(cfg.Primary(), res)
	if err != nil {
		return nil, &TargetError{fmt.Errorf("targets[0].%w", err)}
	}
	h, err := remote.Connect(ctx, e, 3)
	if err != nil {
		return nil, &TargetError{err}
	}
	st, err := snapshots.OpenStore(ctx, cfg, res, h)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &Store{Host: h, Store: st}, nil
}

// Snapshot takes a manual snapshot of the serving release and the
// database.
func Snapshot(ctx context.Context, cfg *config.Config, res *config.Resolver, s *Store, description string) (*snapshots.Manifest, error) {
	layout := deploy.PrimaryLayout(cfg)
	st, err := deploy.LoadState(s.Host, layout)
	if err != nil {
		return nil, fmt.Errorf("reading the target's releases: %w", err)
	}
	r := &Rollout{req: Request{Deploy: deploy.Request{Config: cfg}}}
	var cur *snapshots.Current
	if rel, ok := st.Current(); ok {
		cur = r.current(s.Host, &rel)
	}
	return snapshots.Create(ctx, snapshots.CreateRequest{Config: cfg, Resolver: res, Host: s.Host, Store: s.Store, Current: cur, Description: description, Trigger: "manual"})
}

// PlanFor loads a snapshot and plans the rollback to it; without asked
// components, the database is included when its schema now differs from
// the snapshot's (or cannot be read).
func PlanFor(ctx context.Context, cfg *config.Config, res *config.Resolver, s *Store, id string, asked []string) (*snapshots.Manifest, *RestorePlan, error) {
	m, err := snapshots.Load(ctx, s.Store, id)
	if err != nil {
		return nil, nil, err
	}
	var now *dbschema.Schema
	if db := cfg.Database; db != nil && len(asked) == 0 && m.Database != nil {
		pw, err := res.Resolve(db.Password)
		if err != nil {
			return m, nil, fmt.Errorf("database.password: %w", err)
		}
		// A schema that cannot be read is unknown: the plan includes the
		// database (the safe side), and says so.
		if info, err := snapshots.Inspect(ctx, s.Host, *db, pw); err == nil {
			now = info.Schema
		}
	}
	p, err := PlanRestore(cfg, m, asked, now)
	return m, p, err
}
