package snapshots

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
	"github.com/lawsker/lawsker-deploy/target"
)

// The password reaches pg_dump/pg_restore on stdin, never in argv or a
// file: these scripts are constants, the values arrive as arguments.
const (
	dumpScript    = `read -r PGPASSWORD && export PGPASSWORD && exec pg_dump --format=custom --no-password -h "$1" -p "$2" -U "$3" -d "$4"`
	restoreScript = `read -r PGPASSWORD && export PGPASSWORD && exec pg_restore --no-password --exit-on-error --jobs="$5" -h "$1" -p "$2" -U "$3" -d "$4" "$6"`
)

// DumpDatabase runs pg_dump -Fc on the target (where the database is
// reachable) and streams it into the store under key, hashing on the way.
// It also records what the dump is of: server version, table count and
// the alembic migration version when there is one.
//
// With a recipient, the dump is encrypted with age on its way to the store.
func DumpDatabase(ctx context.Context, h *target.Host, db config.Database, password string, store Store, key string, recipient age.Recipient) (Artifact, *DatabaseInfo, error) {
	info, err := inspect(ctx, h, db, db.User, password, db.Name)
	if err != nil {
		return Artifact{}, nil, err
	}
	art, err := putStream(ctx, store, key, recipient, func(w io.Writer) error {
		err := h.RunStream(ctx, strings.NewReader(password+"\n"), w,
			"sh", "-c", dumpScript, "sh", db.Host, fmt.Sprint(db.Port), db.User, db.Name)
		if err != nil {
			return fmt.Errorf("pg_dump of %s on %s: %w", db.Name, h.Endpoint.Addr(), err)
		}
		return nil
	})
	if err != nil {
		return Artifact{}, nil, err
	}
	return art, info, nil
}

// inspect reads the server version, the number of tables and the alembic
// version through the target's tunnel.
func inspect(ctx context.Context, h *target.Host, db config.Database, user, password, name string) (*DatabaseInfo, error) {
	conn, err := connect(ctx, h, db, user, password, name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	info := &DatabaseInfo{Name: name, Host: db.Host, Port: db.Port}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&info.ServerVersion); err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	var hasAlembic bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('alembic_version') IS NOT NULL").Scan(&hasAlembic); err == nil && hasAlembic {
		_ = conn.QueryRow(ctx, "SELECT version_num FROM alembic_version LIMIT 1").Scan(&info.MigrationVersion)
	}
	return info, nil
}

// MigrationVersion reads the database's alembic version ("" when it has no
// alembic_version table).
func MigrationVersion(ctx context.Context, h *target.Host, db config.Database, password string) (string, error) {
	info, err := inspect(ctx, h, db, db.User, password, db.Name)
	if err != nil {
		return "", err
	}
	return info.MigrationVersion, nil
}

func connect(ctx context.Context, h *target.Host, db config.Database, user, password, name string) (*pgx.Conn, error) {
	cc, err := pgconfig.For(db, user, password, name, h.DialTCP)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s:%d/%s as %s from %s: %w", db.Host, db.Port, name, user, h.Endpoint.Addr(), err)
	}
	return conn, nil
}

// ErrChecksum is wrapped when a stored artifact does not match its manifest.
var ErrChecksum = errors.New("checksum mismatch")

// RestoreOptions say where and how a dump is restored.
type RestoreOptions struct {
	WorkDir  string       // folder on the target for the verified copy of the dump
	Jobs     int          // pg_restore --jobs
	Identity age.Identity // decrypts an encrypted dump
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Replaced string // the database the restore replaced, kept until retention removes it
	Duration time.Duration
}

// RestoreDatabase brings the snapshot's dump back: it copies the dump to
// workDir on the target while checking its SHA-256 (a mismatch stops here:
// nothing changed), restores it with pg_restore --jobs into a fresh
// database, then swaps names in one short step (connections blocked and
// ended, two renames; undone if the second fails). The replaced database
// is kept under <name>_replaced_<time>. The admin role (database.admin_user)
// needs CREATEDB and the right to rename both databases.
func RestoreDatabase(ctx context.Context, h *target.Host, db config.Database, adminPassword string, store Store, m *Manifest, o RestoreOptions) (*RestoreResult, error) {
	workDir, jobs := o.WorkDir, o.Jobs
	start := time.Now()
	art, ok := m.Artifacts["database"]
	if !ok || m.Database == nil {
		return nil, fmt.Errorf("snapshot %s has no database dump", m.ID)
	}
	if m.Database.Name != db.Name {
		return nil, fmt.Errorf("snapshot %s holds a dump of database %q, not %q: nothing was changed", m.ID, m.Database.Name, db.Name)
	}
	if db.AdminUser == "" {
		return nil, errors.New("restoring a database needs database.admin_user and database.admin_password (a role that can create and rename databases)")
	}
	stamp := time.Now().UTC().Format("20060102150405")
	fresh, replaced := db.Name+"_restore_"+stamp, db.Name+"_replaced_"+stamp
	if len(replaced) > 63 {
		return nil, fmt.Errorf("database name %q is too long to keep a replaced copy beside it (63 characters at most)", db.Name)
	}
	dumpPath := path.Join(workDir, ".restore-"+m.ID+".dump")
	if err := copyVerified(ctx, h, store, m.ID, art, dumpPath, o.Identity); err != nil {
		return nil, err
	}
	defer h.Remove(dumpPath)

	admin, err := connect(ctx, h, db, db.AdminUser, adminPassword, "postgres")
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	ident := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(fresh)+" OWNER "+ident(db.User)); err != nil {
		return nil, fmt.Errorf("creating %s for the restore: %w", fresh, err)
	}
	dropFresh := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(cctx, "DROP DATABASE IF EXISTS "+ident(fresh)+" WITH (FORCE)")
	}
	err = h.RunStream(ctx, strings.NewReader(adminPassword+"\n"), io.Discard,
		"sh", "-c", restoreScript, "sh", db.Host, fmt.Sprint(db.Port), db.AdminUser, fresh, fmt.Sprint(max(jobs, 1)), dumpPath)
	if err != nil {
		dropFresh()
		return nil, fmt.Errorf("pg_restore into a fresh database failed; %s is untouched: %w", db.Name, err)
	}
	if err := swap(ctx, admin, db.Name, fresh, replaced); err != nil {
		dropFresh()
		return nil, err
	}
	return &RestoreResult{Replaced: replaced, Duration: time.Since(start)}, nil
}

// copyVerified streams an artifact to path on the target (decrypted when
// it is encrypted); the file appears only once its checksum matched.
func copyVerified(ctx context.Context, h *target.Host, store Store, snapshot string, art Artifact, p string, id age.Identity) error {
	pr, pw := io.Pipe()
	ch := make(chan error, 1)
	go func() {
		err := ReadArtifact(ctx, store, snapshot, art, id, pw)
		pw.CloseWithError(err) // a mismatch reaches WriteFrom before its rename
		ch <- err
	}()
	_, werr := h.WriteFrom(p, pr, 0o600)
	pr.CloseWithError(werr)
	if err := <-ch; err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("copying %s to the target: %w", art.Key, werr)
	}
	return nil
}

// ReadArtifact writes an artifact's content to w, decrypting it when it is
// encrypted (id), and checks the stored bytes against the manifest's size
// and SHA-256 once they are all read: a mismatch returns ErrChecksum (what
// w received must then be discarded).
func ReadArtifact(ctx context.Context, store Store, snapshot string, art Artifact, id age.Identity, w io.Writer) error {
	r, err := store.Open(ctx, art.Key)
	if err != nil {
		return err
	}
	defer r.Close()
	sum := sha256.New()
	counted := &countingReader{r: io.TeeReader(&ctxReader{ctx, r}, sum)}
	plain, err := openSealed(art, counted, id, snapshot)
	if err != nil {
		return err // a key problem: nothing was read
	}
	_, err = io.Copy(w, plain)
	// Hash all the store holds (also what follows an age stream's last
	// chunk, and the rest after a decryption failure: damage shows as a
	// checksum mismatch, not as a cryptic decryption error).
	_, derr := io.Copy(io.Discard, counted)
	if got := hex.EncodeToString(sum.Sum(nil)); derr == nil && (got != art.SHA256 || counted.n != art.Size) {
		return fmt.Errorf("%s: %w (manifest: %d bytes, sha256 %s; stored: %d bytes, sha256 %s): the artifact is damaged, nothing was changed",
			art.Key, ErrChecksum, art.Size, art.SHA256, counted.n, got)
	}
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", art.Key, err)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// swap puts fresh in place of name in one short step.
func swap(ctx context.Context, admin *pgx.Conn, name, fresh, replaced string) error {
	ident := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	// New connections are refused, existing ones ended; the app's pool
	// reconnects to the restored database a moment later.
	_, err := admin.Exec(ctx, "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS false")
	if err == nil {
		_, err = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()", []string{name, fresh})
	}
	if err != nil {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS true")
		return fmt.Errorf("preparing the swap: %w", err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(name)+" RENAME TO "+ident(replaced)); err != nil {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS true")
		return fmt.Errorf("renaming %s aside: %w", name, err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(fresh)+" RENAME TO "+ident(name)); err != nil {
		// Put the original back under its name.
		uctx := context.WithoutCancel(ctx)
		_, _ = admin.Exec(uctx, "ALTER DATABASE "+ident(replaced)+" RENAME TO "+ident(name))
		_, _ = admin.Exec(uctx, "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS true")
		return fmt.Errorf("renaming the restored database into place (the original is back): %w", err)
	}
	// The replaced copy keeps refusing connections: it is an archive.
	return nil
}

// PruneDatabases drops what restores left beside db.Name: replaced
// databases (<name>_replaced_<time>) older than keepSince, and fresh copies
// of restores that never finished (<name>_restore_<time>) older than an
// hour. It returns the dropped names (with dryRun, those it would drop).
func PruneDatabases(ctx context.Context, h *target.Host, db config.Database, adminPassword string, keepSince, now time.Time, dryRun bool) ([]string, error) {
	admin, err := connect(ctx, h, db, db.AdminUser, adminPassword, "postgres")
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	rows, err := admin.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1 OR datname LIKE $2",
		likeEscape(db.Name)+`\_replaced\_%`, likeEscape(db.Name)+`\_restore\_%`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, n := range names {
		kind, stamp, ok := strings.Cut(strings.TrimPrefix(n, db.Name+"_"), "_")
		t, perr := time.Parse("20060102150405", stamp)
		if !ok || perr != nil {
			continue // not ours
		}
		if (kind == "replaced" && t.Before(keepSince)) || (kind == "restore" && t.Before(now.Add(-time.Hour))) {
			if dryRun {
				dropped = append(dropped, n)
				continue
			}
			if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
				return dropped, fmt.Errorf("dropping %s: %w", n, err)
			}
			dropped = append(dropped, n)
		}
	}
	return dropped, nil
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}
