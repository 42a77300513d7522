package dbschema

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Ownership is what pg_dump of one database does not carry and a restore
// must put back for the restored database to be the same database: who
// owns it, its privileges and settings, and who owns each extension (an
// extension belongs to whoever ran CREATE EXTENSION: the app's role for a
// trusted one, which the next migration may need to ALTER or DROP).
type Ownership struct {
	Owner      string      `json:"owner"`
	ACL        []string    `json:"acl,omitempty"`      // pg_database.datacl items, "grantee=privileges/grantor"
	Settings   []string    `json:"settings,omitempty"` // ALTER DATABASE ... SET, as "name=value"
	Extensions []Extension `json:"extensions,omitempty"`
}

// Extension is one installed extension.
type Extension struct {
	Name    string `json:"name"`
	Schema  string `json:"schema"`
	Version string `json:"version"`
	Owner   string `json:"owner"`
}

// ReadOwnership reads conn's database's ownership.
func ReadOwnership(ctx context.Context, conn *pgx.Conn) (*Ownership, error) {
	o := &Ownership{}
	err := conn.QueryRow(ctx, `SELECT pg_get_userbyid(d.datdba), coalesce(d.datacl::text[], '{}'),
			coalesce((SELECT setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')
		FROM pg_database d WHERE d.datname = current_database()`).Scan(&o.Owner, &o.ACL, &o.Settings)
	if err != nil {
		return nil, fmt.Errorf("reading the database's owner and privileges: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT e.extname, n.nspname, e.extversion, pg_get_userbyid(e.extowner)
		FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY e.extname`)
	if err != nil {
		return nil, fmt.Errorf("reading the extensions' owners: %w", err)
	}
	o.Extensions, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Extension])
	if err != nil {
		return nil, fmt.Errorf("reading the extensions' owners: %w", err)
	}
	return o, nil
}

// databasePrivileges maps aclitem letters to GRANT's words (databases).
var databasePrivileges = map[rune]string{'C': "CREATE", 'c': "CONNECT", 'T': "TEMPORARY"}

// Statements are what, run by a superuser (or the owner) on another
// database, give it o's owner, privileges and settings. The extensions'
// owners are PreCreate's and FixExtensions' part.
func (o *Ownership) Statements(database string) ([]string, error) {
	db := pgx.Identifier{database}.Sanitize()
	out := []string{"ALTER DATABASE " + db + " OWNER TO " + pgx.Identifier{o.Owner}.Sanitize()}
	if len(o.ACL) > 0 {
		out = append(out, "REVOKE ALL ON DATABASE "+db+" FROM PUBLIC")
	}
	for _, item := range o.ACL {
		grantee, rest, ok := strings.Cut(item, "=")
		privs, _, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			return nil, fmt.Errorf("database privilege %q is not an aclitem", item)
		}
		grantee = strings.Trim(grantee, `"`)
		to := "PUBLIC"
		if grantee != "" {
			to = pgx.Identifier{grantee}.Sanitize()
		}
		var plain, withGrant []string
		rs := []rune(privs)
		for i := 0; i < len(rs); i++ {
			word, known := databasePrivileges[rs[i]]
			if !known {
				return nil, fmt.Errorf("database privilege %q: unknown privilege %q", item, rs[i])
			}
			if i+1 < len(rs) && rs[i+1] == '*' {
				withGrant = append(withGrant, word)
				i++
			} else {
				plain = append(plain, word)
			}
		}
		if len(plain) > 0 {
			out = append(out, "GRANT "+strings.Join(plain, ", ")+" ON DATABASE "+db+" TO "+to)
		}
		if len(withGrant) > 0 {
			out = append(out, "GRANT "+strings.Join(withGrant, ", ")+" ON DATABASE "+db+" TO "+to+" WITH GRANT OPTION")
		}
	}
	for _, s := range o.Settings {
		name, value, ok := strings.Cut(s, "=")
		if !ok || !settingName.MatchString(name) {
			return nil, fmt.Errorf("database setting %q is not name=value", s)
		}
		v := quoteLiteral(value)
		if listSettings[name] { // stored as "a, b": each element is a literal of its own
			var parts []string
			for _, p := range strings.Split(value, ",") {
				parts = append(parts, quoteLiteral(strings.Trim(strings.TrimSpace(p), `"`)))
			}
			v = strings.Join(parts, ", ")
		}
		out = append(out, "ALTER DATABASE "+db+" SET "+name+" = "+v)
	}
	return out, nil
}

// PreCreate creates, in a fresh database (conn, as an admin who may SET
// ROLE to each owner), the extensions of o that live in public, as their
// owners, before pg_restore runs: the dump's CREATE EXTENSION IF NOT EXISTS
// then finds them, and they belong to whom they belonged to.
func (o *Ownership) PreCreate(ctx context.Context, conn *pgx.Conn, admin string) error {
	for _, e := range o.Extensions {
		if e.Schema != "public" || e.Owner == admin {
			continue
		}
		sql := "SET ROLE " + pgx.Identifier{e.Owner}.Sanitize() + "; CREATE EXTENSION IF NOT EXISTS " + pgx.Identifier{e.Name}.Sanitize() +
			" WITH SCHEMA public VERSION " + quoteLiteral(e.Version) + "; RESET ROLE"
		if _, err := conn.Exec(ctx, sql); err != nil {
			_, _ = conn.Exec(ctx, "RESET ROLE")
			return fmt.Errorf("creating extension %s as its owner %s (as it was in the source): %w", e.Name, e.Owner, err)
		}
	}
	return nil
}

// FixExtensions gives each extension of o its owner back where PreCreate
// could not (an extension in a schema the dump creates): a superuser
// changes pg_extension.extowner, as no ALTER EXTENSION can.
func (o *Ownership) FixExtensions(ctx context.Context, conn *pgx.Conn) error {
	for _, e := range o.Extensions {
		_, err := conn.Exec(ctx, `UPDATE pg_catalog.pg_extension SET extowner = (SELECT oid FROM pg_roles WHERE rolname = $2)
			WHERE extname = $1 AND extowner <> (SELECT oid FROM pg_roles WHERE rolname = $2)`, e.Name, e.Owner)
		if err != nil {
			return fmt.Errorf("giving extension %s back to %s (needs a superuser as database.admin_user): %w", e.Name, e.Owner, err)
		}
	}
	return nil
}

// Listing is every owned object of conn's database with its owner and
// privileges, one line each in a stable order: what tests compare between
// a database and its restored copy.
func Listing(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT line FROM (
		SELECT 'database ' || pg_get_userbyid(datdba) || ' ' || coalesce(datacl::text, '') AS line FROM pg_database WHERE datname = current_database()
		UNION ALL SELECT 'schema ' || nspname || ' ' || pg_get_userbyid(nspowner) || ' ' || coalesce(nspacl::text, '') FROM pg_namespace
			WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'
		UNION ALL SELECT 'relation ' || n.nspname || '.' || c.relname || ' ' || pg_get_userbyid(c.relowner) || ' ' || coalesce(c.relacl::text, '')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		UNION ALL SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || pg_get_userbyid(p.proowner) || ' ' || coalesce(p.proacl::text, '')
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
		UNION ALL SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || pg_get_userbyid(t.typowner) || ' ' || coalesce(t.typacl::text, '')
			FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		UNION ALL SELECT 'extension ' || extname || ' ' || extversion || ' ' || pg_get_userbyid(extowner) FROM pg_extension
		UNION ALL SELECT 'setting ' || array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
			WHERE d.datname = current_database()
	) x ORDER BY line COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

var (
	settingName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
	listSettings = map[string]bool{"search_path": true, "temp_tablespaces": true, "session_preload_libraries": true, "local_preload_libraries": true}
)

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
