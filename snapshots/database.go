package snapshots

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
	"github.com/lawsker/lawsker-deploy/remote"
)

// The password reaches pg_dump/pg_restore on stdin, never in argv or a
// file: these scripts are constants, the values arrive as arguments.
const (
	dumpScript    = `read -r PGPASSWORD && export PGPASSWORD && exec pg_dump --format=custom --compress="$5" --no-password -h "$1" -p "$2" -U "$3" -d "$4"`
	restoreScript = `read -r PGPASSWORD && export PGPASSWORD && exec pg_restore --no-password --exit-on-error --jobs="$5" -h "$1" -p "$2" -U "$3" -d "$4" "$6"`
)

// DumpDatabase runs pg_dump -Fc on the target (where the database is
// reachable) and streams it into the store under key, hashing on the way.
// It also records what the dump is of: server version, table count and
// the schema, the migration tool's version, the ownership (inspect).
//
// With a recipient, the dump is encrypted with age on its way to the store.
func DumpDatabase(ctx context.Context, h *remote.Host, db config.Database, password string, store Store, key string, o DumpOptions) (Artifact, *DatabaseInfo, error) {
	if o.Compression < 0 || o.Compression > 9 {
		return Artifact{}, nil, fmt.Errorf("snapshots.dump_compression: %d is not a zlib level (0 to 9)", o.Compression)
	}
	info, err := inspect(ctx, h, db, db.User, password, db.Name)
	if err != nil {
		return Artifact{}, nil, err
	}
	art, err := putStream(ctx, store, key, o.Recipient, func(w io.Writer) error {
		err := h.RunStream(ctx, strings.NewReader(password+"\n"), w,
			"sh", "-c", dumpScript, "sh", db.Host, fmt.Sprint(db.Port), db.User, db.Name, fmt.Sprint(o.Compression))
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

// inspect reads the server version, the schema (dbschema.Read), the
// migration tool's version and the ownership through the target's tunnel.
func inspect(ctx context.Context, h *remote.Host, db config.Database, user, password, name string) (*DatabaseInfo, error) {
	conn, err := connect(ctx, h, db, user, password, name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	info := &DatabaseInfo{Name: name, Host: db.Host, Port: db.Port}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&info.ServerVersion); err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	if info.Schema, err = dbschema.Read(ctx, conn); err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	if info.Ownership, err = dbschema.ReadOwnership(ctx, conn); err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	mig, err := dbschema.ReadMigration(ctx, conn, db.MigrationVersionQuery)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	if mig != nil {
		info.MigrationTool, info.MigrationVersion = mig.Tool, mig.Version
	}
	return info, nil
}

// Inspect reads what the database is now, as the application's role sees
// it: server version, schema, migration version, ownership.
func Inspect(ctx context.Context, h *remote.Host, db config.Database, password string) (*DatabaseInfo, error) {
	return inspect(ctx, h, db, db.User, password, db.Name)
}

func connect(ctx context.Context, h *remote.Host, db config.Database, user, password, name string) (*pgx.Conn, error) {
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

// DumpOptions say how a dump is made.
type DumpOptions struct {
	Compression int           // pg_dump --compress: zlib level 0 (none) to 9
	Recipient   age.Recipient // encrypts the dump when set
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
	// Transfer says how the dump reached pg_restore: "in place" (the target
	// store on the host), "fetched by the target" (signed URL) or "copied
	// through this machine".
	Transfer string
}

// RestoreDatabase brings the snapshot's dump back: it puts the dump where
// pg_restore on the target reads it, restores it with pg_restore --jobs
// into a fresh database, checks its SHA-256 against the manifest, and only
// then swaps names in one short step (connections blocked and ended, two
// renames; undone if the second fails). The replaced database is kept
// under <name>_replaced_<time>. The admin role (database.admin_user) needs
// CREATEDB and the right to rename both databases.
//
// Until the swap nothing but the fresh database changes, so the slow parts
// overlap: the admin connection and the fresh database are made while the
// dump is placed, and the checksum is computed on the target while
// pg_restore runs (a mismatch stops pg_restore and drops the fresh
// database: the database is untouched, and the error says the artifact is
// damaged). A dump copied through this machine is checked on its way.
func RestoreDatabase(ctx context.Context, h *remote.Host, db config.Database, adminPassword string, store Store, m *Manifest, o RestoreOptions) (*RestoreResult, error) {
	st, err := StageRestore(ctx, h, db, adminPassword, store, m, o)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Swap(ctx)
}

// StagedRestore is a snapshot's dump restored into a fresh database beside
// the serving one, checked against its manifest and owned as in the
// source, waiting for its swap. Until Swap nothing but the fresh copy
// exists; Close drops the copy when it was not swapped in.
type StagedRestore struct {
	// Fresh is the copy's name; Replaced, the name the serving database
	// is kept under once swapped (a journal records it before the swap).
	Fresh, Replaced string
	db              config.Database
	admin           *pgx.Conn
	start           time.Time
	transfer        string
	swapped         bool
}

// StageRestore is RestoreDatabase up to the swap: the slow part, done
// while the serving release keeps serving.
func StageRestore(ctx context.Context, h *remote.Host, db config.Database, adminPassword string, store Store, m *Manifest, o RestoreOptions) (*StagedRestore, error) {
	start := time.Now()
	art, ok := m.Artifacts[ComponentDatabase]
	if !ok || m.Database == nil {
		return nil, fmt.Errorf("snapshot %s has no database dump", m.ID)
	}
	if m.Database.Name != db.Name {
		return nil, fmt.Errorf("snapshot %s holds a dump of database %q, not %q: nothing was changed", m.ID, m.Database.Name, db.Name)
	}
	if db.AdminUser == "" {
		return nil, errors.New("restoring a database needs database.admin_user and database.admin_password (a role that can create and rename databases)")
	}
	at := time.Now().UTC()
	names := func(at time.Time) (string, string) {
		stamp := at.Format("20060102150405")
		return db.Name + "_restore_" + stamp, db.Name + "_replaced_" + stamp
	}
	fresh, replaced := names(at)
	if len(replaced) > 63 {
		return nil, fmt.Errorf("database name %q is too long to keep a replaced copy beside it (63 characters at most)", db.Name)
	}
	if art.Encryption != "" && (o.Identity == nil || art.Encryption != EncryptionAge) {
		_, err := openSealed(art, nil, o.Identity, m.ID) // names the missing key: before anything is made
		return nil, err
	}
	ident := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	type prepared struct {
		admin *pgx.Conn
		err   error
	}
	prep := make(chan prepared, 1)
	go func() {
		admin, err := connect(ctx, h, db, db.AdminUser, adminPassword, "postgres")
		if err == nil {
			err = restorableOn(ctx, admin, m)
		}
		// Names are stamped to the second: a restore in the same second
		// as the last one takes the next free second.
		for i := 0; err == nil && i < 60; i++ {
			var taken bool
			if err = admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = ANY($1))", []string{fresh, replaced}).Scan(&taken); err != nil || !taken {
				break
			}
			at = at.Add(time.Second)
			fresh, replaced = names(at)
		}
		if err == nil {
			err = createFresh(ctx, h, db, adminPassword, admin, fresh, m.Database.Ownership)
		}
		prep <- prepared{admin, err}
	}()
	dumpPath, transfer, cleanup, check, serr := stageDump(ctx, h, store, m.ID, art, o)
	p := <-prep
	kept := false
	if p.admin != nil {
		defer func() {
			if !kept {
				p.admin.Close(context.WithoutCancel(ctx))
			}
		}()
	}
	admin := p.admin
	dropFresh := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(cctx, "DROP DATABASE IF EXISTS "+ident(fresh)+" WITH (FORCE)")
	}
	if serr != nil {
		if p.err == nil {
			dropFresh()
		}
		return nil, serr
	}
	defer cleanup()
	if p.err != nil {
		return nil, p.err // nothing made: a failed CREATE DATABASE leaves nothing
	}
	rctx, stopRestore := context.WithCancel(ctx)
	defer stopRestore()
	checked := make(chan error, 1)
	go func() {
		var err error
		if check != nil {
			if err = check(); err != nil {
				stopRestore()
			}
		}
		checked <- err
	}()
	err := h.RunStream(rctx, strings.NewReader(adminPassword+"\n"), io.Discard,
		"sh", "-c", restoreScript, "sh", db.Host, fmt.Sprint(db.Port), db.AdminUser, fresh, fmt.Sprint(max(o.Jobs, 1)), dumpPath)
	if cerr := <-checked; cerr != nil {
		dropFresh()
		return nil, cerr // a damaged dump explains a failed pg_restore
	}
	if err != nil {
		dropFresh()
		return nil, fmt.Errorf("pg_restore into a fresh database failed; %s is untouched: %w", db.Name, err)
	}
	if err := sameOwners(ctx, h, db, adminPassword, admin, fresh, m.Database.Ownership); err != nil {
		dropFresh()
		return nil, fmt.Errorf("%w; %s is untouched", err, db.Name)
	}
	kept = true // the staged restore owns the connection now
	return &StagedRestore{Fresh: fresh, Replaced: replaced, db: db, admin: admin, start: start, transfer: transfer}, nil
}

// Swap puts the staged copy in place of the serving database in one short
// step (see swap): first it waits, at most a second, for the database's
// sessions to finish the statement or transaction they are in, so no
// query is cut (the caller has stopped new requests). A failed swap leaves
// the database as it was (Close then drops the copy).
func (s *StagedRestore) Swap(ctx context.Context) (*RestoreResult, error) {
	if s.swapped || s.admin == nil {
		return nil, errors.New("the staged restore was already swapped in or closed")
	}
	waitIdle(ctx, s.admin, s.db.Name, time.Second)
	if err := swap(ctx, s.admin, s.db.Name, s.Fresh, s.Replaced); err != nil {
		return nil, err
	}
	s.swapped = true
	return &RestoreResult{Replaced: s.Replaced, Duration: time.Since(s.start), Transfer: s.transfer}, nil
}

// Close drops the copy unless it was swapped in, and closes the admin
// connection.
func (s *StagedRestore) Close() {
	if s.admin == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !s.swapped {
		_, _ = s.admin.Exec(cctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.Fresh}.Sanitize()+" WITH (FORCE)")
	}
	_ = s.admin.Close(cctx)
	s.admin = nil
}

// waitIdle waits, up to bound, until no session of database name is
// running a statement or inside a transaction.
func waitIdle(ctx context.Context, admin *pgx.Conn, name string, bound time.Duration) {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		var busy int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'", name).Scan(&busy); err != nil || busy == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Unswap undoes a swap whose release was undone before it served: the
// database kept as replaced goes back under db.Name (accepting connections
// again), and the restored one goes aside as a restore copy, which the
// next converge or prune drops (it is the snapshot's dump, which stays in
// the store). A replaced database that is no longer there is an error
// that says so; db.Name already being the replaced one (a replay) is done.
func Unswap(ctx context.Context, h *remote.Host, db config.Database, adminPassword, replaced string) error {
	admin, err := connect(ctx, h, db, db.AdminUser, adminPassword, "postgres")
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	exists := func(name string) (bool, error) {
		var there bool
		err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&there)
		return there, err
	}
	there, err := exists(replaced)
	if err != nil {
		return err
	}
	if !there {
		current, err := exists(db.Name)
		if err != nil {
			return err
		}
		if current {
			return nil // replayed: already back
		}
		return fmt.Errorf("the database kept as %s before the swap is gone, and %s does not exist: restore with `lawsker-deploy rollback --snapshot ID --components database`", replaced, db.Name)
	}
	// As long as the replaced name (checked when it was made): it fits.
	aside := db.Name + "_restore_" + time.Now().UTC().Format("20060102150405")
	if err := swap(ctx, admin, db.Name, replaced, aside); err != nil {
		return fmt.Errorf("putting %s back: %w", replaced, err)
	}
	_, err = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" ALLOW_CONNECTIONS true")
	return err
}

// restorableOn refuses, before anything is made, a dump from a newer
// PostgreSQL major version than the server's (pg_restore cannot load it:
// it would fail half way). An older one restores (pg_restore reads older
// archives); its schema's fingerprint may then differ in form, which only
// makes the tool take the safe side.
func restorableOn(ctx context.Context, admin *pgx.Conn, m *Manifest) error {
	var num int
	if err := admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		return fmt.Errorf("reading the server's version: %w", err)
	}
	var from int
	if _, err := fmt.Sscanf(m.Database.ServerVersion, "%d", &from); err != nil {
		return fmt.Errorf("snapshot %s: its server version %q is not a PostgreSQL version: nothing was changed", m.ID, m.Database.ServerVersion)
	}
	if server := num / 10000; from > server {
		return fmt.Errorf("snapshot %s is a dump of PostgreSQL %d and this server runs PostgreSQL %d: pg_restore cannot load a newer major version's dump; restore it on a PostgreSQL %d or newer; nothing was changed", m.ID, from, server, from)
	}
	return nil
}

// createFresh makes the database a restore goes into, owned by the
// source's owner, with the source's extensions that pg_restore would
// otherwise create as the admin created by their owners.
func createFresh(ctx context.Context, h *remote.Host, db config.Database, adminPassword string, admin *pgx.Conn, fresh string, own *dbschema.Ownership) error {
	owner := db.User
	if own != nil && own.Owner != "" {
		owner = own.Owner
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{fresh}.Sanitize()+" OWNER "+pgx.Identifier{owner}.Sanitize()); err != nil {
		return fmt.Errorf("creating %s for the restore: %w", fresh, err)
	}
	if own == nil || !slices.ContainsFunc(own.Extensions, func(e dbschema.Extension) bool { return e.Owner != db.AdminUser }) {
		return nil
	}
	conn, err := connect(ctx, h, db, db.AdminUser, adminPassword, fresh)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return own.PreCreate(ctx, conn, db.AdminUser)
}

// sameOwners gives the restored database what the dump does not carry
// (its privileges and settings; the extensions' owners where createFresh
// could not), before the swap.
func sameOwners(ctx context.Context, h *remote.Host, db config.Database, adminPassword string, admin *pgx.Conn, fresh string, own *dbschema.Ownership) error {
	if own == nil {
		return nil // a snapshot from before lawsker-deploy recorded them
	}
	stmts, err := own.Statements(fresh)
	if err != nil {
		return fmt.Errorf("the snapshot's ownership: %w", err)
	}
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil {
			return fmt.Errorf("restoring the database's owner, privileges and settings (%s): %w", s, err)
		}
	}
	conn, err := connect(ctx, h, db, db.AdminUser, adminPassword, fresh)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	now, err := dbschema.ReadOwnership(ctx, conn)
	if err != nil {
		return err
	}
	if slices.Equal(now.Extensions, own.Extensions) {
		return nil
	}
	if err := own.FixExtensions(ctx, conn); err != nil {
		return err
	}
	return nil
}

// stageDump puts the dump where pg_restore on the target reads it and
// returns its path, how it got there, what removes it after the restore,
// and the check of its checksum still to run (nil when it was checked on
// its way). In order of preference: the file itself when the target store
// keeps it on this host; a copy the target fetches straight from the
// object store through a short-lived signed URL (the bytes do not travel
// through this machine: from a laptop that is one WAN transfer instead of
// two); a copy streamed through this machine over SSH (encrypted dumps,
// which only this machine can decrypt, and targets that cannot reach the
// store or have no curl).
func stageDump(ctx context.Context, h *remote.Host, store Store, snapshot string, art Artifact, o RestoreOptions) (string, string, func(), func() error, error) {
	if ts, ok := store.(TargetStore); ok && art.Encryption == "" && ts.Host.Endpoint.Addr() == h.Endpoint.Addr() && ts.Host.Endpoint.User == h.Endpoint.User {
		// Already on the host: read and check it where it is. The deploy
		// lock keeps retention from removing it meanwhile.
		p := path.Join(ts.Dir, art.Key)
		return p, TransferInPlace, func() {}, func() error { return checkOnTarget(ctx, h, ts.String(), art, p) }, nil
	}
	p := path.Join(o.WorkDir, ".restore-"+snapshot+".dump")
	remove := func() { _ = h.Remove(p) }
	if sg, ok := store.(Signer); ok && art.Encryption == "" {
		err := fetchOnTarget(ctx, h, sg, art, p)
		if err == nil {
			return p, TransferFetched, remove, func() error { return checkOnTarget(ctx, h, store.String(), art, p) }, nil
		}
		if ctx.Err() != nil {
			return "", "", nil, nil, err
		}
		// The target could not fetch it itself: copy it through here.
	}
	if err := copyVerified(ctx, h, store, snapshot, art, p, o.Identity); err != nil {
		return "", "", nil, nil, err
	}
	return p, TransferCopied, remove, nil, nil
}

// How a dump reaches pg_restore (RestoreResult.Transfer).
const (
	TransferInPlace = "in place"
	TransferFetched = "fetched by the target"
	TransferCopied  = "copied through this machine"
)

// Signer is a store that hands out time-limited URLs to read a key.
type Signer interface {
	SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// fetchScript downloads the URL read from stdin (never in argv: it is a
// credential) into $1 with curl; a failure leaves no file.
const fetchScript = `command -v curl >/dev/null 2>&1 || { echo "curl is not installed" >&2; exit 127; }
read -r url && umask 077 && printf 'url = "%s"\n' "$url" | curl --fail --silent --show-error --connect-timeout 10 --retry 2 --config - --output "$1" || { rm -f "$1"; exit 1; }`

// fetchOnTarget has the target download an artifact from the store itself
// to p; on failure no file is left at p.
func fetchOnTarget(ctx context.Context, h *remote.Host, sg Signer, art Artifact, p string) error {
	url, err := sg.SignedURL(ctx, art.Key, 15*time.Minute)
	if err != nil {
		return err
	}
	if strings.ContainsAny(url, "\"\\\n") {
		return fmt.Errorf("signed URL for %s has characters curl's config cannot carry", art.Key)
	}
	if _, err := h.RunInput(ctx, strings.NewReader(url+"\n"), "sh", "-c", fetchScript, "sh", p); err != nil {
		return fmt.Errorf("fetching %s on %s: %s", art.Key, h.Endpoint.Addr(), redact(err.Error(), url))
	}
	return nil
}

// redact takes a signed URL (and its query, the credential part) out of a
// message.
func redact(msg, url string) string {
	msg = strings.ReplaceAll(msg, url, "<signed URL>")
	if i := strings.IndexByte(url, '?'); i >= 0 && len(url) > i+1 {
		msg = strings.ReplaceAll(msg, url[i+1:], "<signature>")
	}
	return msg
}

// checkScript prints a file's size and SHA-256 (openssl when there is one:
// it uses the CPU's SHA instructions, coreutils' sha256sum does not).
const checkScript = `stat -c %s -- "$1" && if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r "$1"; else sha256sum -- "$1"; fi`

// checkOnTarget compares a file on the target with the manifest's size and
// SHA-256, computed on the host: the bytes do not travel.
func checkOnTarget(ctx context.Context, h *remote.Host, store string, art Artifact, p string) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("checking %s on %s: %q is not an absolute path", art.Key, h.Endpoint.Addr(), p)
	}
	out, err := h.Run(ctx, "sh", "-c", checkScript, "sh", p)
	if err != nil {
		var re *remote.RemoteError
		if errors.As(err, &re) && strings.Contains(re.Stderr, "No such file") {
			return fmt.Errorf("%s: %s: %w", store, art.Key, ErrNotFound)
		}
		return fmt.Errorf("checking %s on %s: %w", art.Key, h.Endpoint.Addr(), err)
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return fmt.Errorf("checking %s on %s: unexpected output of stat and sha256: %q", art.Key, h.Endpoint.Addr(), out)
	}
	return matches(art, f[0], f[1])
}

// copyVerified streams an artifact to path on the target (decrypted when
// it is encrypted); the file appears only once its checksum matched.
func copyVerified(ctx context.Context, h *remote.Host, store Store, snapshot string, art Artifact, p string, id age.Identity) error {
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
	if derr == nil {
		if err := matches(art, fmt.Sprint(counted.n), hex.EncodeToString(sum.Sum(nil))); err != nil {
			return err
		}
	}
	if err == nil {
		err = derr
	}
	if err != nil && strings.Contains(err.Error(), "checksum did not match") {
		// The store's own checksum (S3's CRC32 of a single-part object).
		return fmt.Errorf("%s: %w (the store reports: %v): the artifact is damaged, nothing was changed", art.Key, ErrChecksum, err)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", art.Key, err)
	}
	return nil
}

// matches compares what is stored (its size and SHA-256) with the
// manifest; a difference wraps ErrChecksum.
func matches(art Artifact, size, sha string) error {
	if sha != art.SHA256 || size != fmt.Sprint(art.Size) {
		return fmt.Errorf("%s: %w (manifest: %d bytes, sha256 %s; stored: %s bytes, sha256 %s): the artifact is damaged, nothing was changed",
			art.Key, ErrChecksum, art.Size, art.SHA256, size, sha)
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
// of restores that never finished (<name>_restore_<time>) older than
// copiesBefore (a restore runs under the deploy lock: whoever holds it, or
// finds it free, knows every copy is abandoned). It returns the dropped
// names (with dryRun, those it would drop).
func PruneDatabases(ctx context.Context, h *remote.Host, db config.Database, adminPassword string, keepSince, copiesBefore time.Time, dryRun bool) ([]string, error) {
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
		if (kind == "replaced" && t.Before(keepSince)) || (kind == "restore" && t.Before(copiesBefore)) {
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

// DropRestoreCopies drops every restore copy of db.Name, for a caller that
// holds the deploy lock (no restore can be running), and returns their
// names.
func DropRestoreCopies(ctx context.Context, h *remote.Host, db config.Database, adminPassword string) ([]string, error) {
	return PruneDatabases(ctx, h, db, adminPassword, time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), false)
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}
