package deploy

import (
	"context"

	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/remote"
)

// touchSchema notes that something that may change the database's schema
// began: the migrations, or a new backend (which may migrate at its
// start). Before it, an undone run leaves the database alone.
func (d *Deployment) touchSchema() {
	d.mu.Lock()
	d.migrated = true
	d.mu.Unlock()
}

// schemaTouched says whether touchSchema was called.
func (d *Deployment) schemaTouched() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.migrated
}

// LiveSchema reads the database's schema from its catalog as the app's
// role, through h's tunnel (nil, nil without a database).
func LiveSchema(ctx context.Context, h *remote.Host, req Request) (*dbschema.Schema, error) {
	db := req.Config.Database
	if db == nil {
		return nil, nil
	}
	pw, err := req.Resolver.Resolve(db.Password)
	if err != nil {
		return nil, err
	}
	conn, err := connectVia(ctx, *db, db.User, pw, db.Name, h.DialTCP)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return dbschema.Read(ctx, conn)
}

func (d *Deployment) releaseSchema() *dbschema.Schema {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.schema
}

// recordSchema reads the schema the new release runs on (its backend
// passed the health gate: whatever migrates has migrated) for its entry
// in state.json. Unreadable is recorded as unknown, with a warning.
func (d *Deployment) recordSchema(ctx context.Context, tr *targetRun) {
	if d.req.Config.Database == nil || tr != d.primary() {
		return
	}
	s, err := LiveSchema(ctx, tr.host, d.req)
	if err != nil {
		d.log.Warn("the release's database schema could not be read; it is recorded as unknown", "error", err)
		return
	}
	d.mu.Lock()
	d.schema = s
	d.mu.Unlock()
}
