// Package dbschema sees a PostgreSQL database as its catalog describes it,
// whatever tool migrates it: the schema's fingerprint (which every decision
// about restoring a database compares), the migration tool's own version (for
// people), and who owns what (so a restored database is the same database).
package dbschema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Schema is what a database's catalog says of its structure, whatever tool
// migrates it: a fingerprint of its user objects (tables and their columns
// with types, defaults and nullability, constraints, indexes, sequences'
// definitions, views, functions, triggers, types, extensions with their
// versions), and counts for people. It leaves out data and statistics, OIDs
// and objects that belong to extensions, so a dump restored elsewhere has
// the same fingerprint. Owners and privileges are not in it.
type Schema struct {
	Fingerprint string `json:"fingerprint"`
	Tables      int    `json:"tables"`
	Objects     int    `json:"objects"`
}

// Short is the fingerprint's first 12 characters, for people.
func (s *Schema) Short() string {
	if s == nil || len(s.Fingerprint) < 12 {
		return "unknown"
	}
	return s.Fingerprint[:12]
}

// Describe reads as "schema: 42 tables, fingerprint a1b2c3d4e5f6".
func (s *Schema) Describe() string {
	if s == nil {
		return "schema unknown"
	}
	noun := "tables"
	if s.Tables == 1 {
		noun = "table"
	}
	return fmt.Sprintf("schema: %d %s, fingerprint %s", s.Tables, noun, s.Short())
}

// Query lists every user object as (kind, canonical text), in a
// stable order (Read runs it; FromCopy reads its COPY output, for where
// only psql reaches the database). The WITH keeps out the system schemas and, through
// pg_depend, what extensions own.
const Query = `
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'
),
ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e')
SELECT kind, body FROM (
  SELECT 'schema' AS kind, nspname AS body FROM ns WHERE nspname <> 'public'
  UNION ALL
  SELECT 'relation', n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text
  FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'column', n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
    || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    || CASE WHEN a.attidentity::text <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
    || CASE WHEN a.attgenerated::text <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'constraint', n.nspname || '.' || coalesce(c.relname, '') || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN ns n ON n.oid = k.connamespace LEFT JOIN pg_class c ON c.oid = k.conrelid
  WHERE k.oid NOT IN (SELECT objid FROM ext) AND (c.oid IS NULL OR c.oid NOT IN (SELECT objid FROM ext))
  UNION ALL
  SELECT 'index', pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns n ON n.oid = c.relnamespace
  WHERE i.indrelid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'sequence', n.nspname || '.' || c.relname || ' ' || format_type(s.seqtypid, NULL) || ' ' || s.seqstart || ' ' || s.seqincrement || ' '
    || s.seqmin || ' ' || s.seqmax || ' ' || s.seqcache || ' ' || s.seqcycle::text
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN ns n ON n.oid = c.relnamespace
  WHERE c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'view', n.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'm') AND c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'function', n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || p.prokind::text
    || ' ' || coalesce(pg_get_function_result(p.oid), '') || ' ' || md5(coalesce(p.prosrc, ''))
  FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
  WHERE p.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'trigger', pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns n ON n.oid = c.relnamespace
  WHERE NOT t.tgisinternal AND c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'type', n.nspname || '.' || t.typname || ' ' || t.typtype::text
    || coalesce(' (' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) || ')', '')
    || CASE WHEN t.typtype = 'd' THEN ' ' || format_type(t.typbasetype, t.typtypmod) ELSE '' END
  FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
  WHERE (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
    AND t.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT 'extension', extname || ' ' || extversion FROM pg_extension WHERE extname <> 'plpgsql'
) objects
ORDER BY kind, body COLLATE "C"`

// Read reads conn's database's schema from its catalog.
func Read(ctx context.Context, conn *pgx.Conn) (*Schema, error) {
	rows, err := conn.Query(ctx, Query)
	if err != nil {
		return nil, fmt.Errorf("reading the schema from the catalog: %w", err)
	}
	defer rows.Close()
	f := newFingerprinter()
	for rows.Next() {
		var kind, body string
		if err := rows.Scan(&kind, &body); err != nil {
			return nil, fmt.Errorf("reading the schema from the catalog: %w", err)
		}
		f.add(kind, body)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the schema from the catalog: %w", err)
	}
	return f.schema(), nil
}

// FromCopy is Read from the output of psql's
// `COPY (<Query>) TO STDOUT` (text format: tab-separated, escaped).
func FromCopy(out string) (*Schema, error) {
	f := newFingerprinter()
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		kind, body, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, fmt.Errorf("reading the schema: %q is not a line of COPY's text format", line)
		}
		f.add(unescapeCopy(kind), unescapeCopy(body))
	}
	return f.schema(), nil
}

// unescapeCopy undoes COPY's text-format escapes.
func unescapeCopy(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// fingerprinter hashes (kind, body) rows in Query's order.
type fingerprinter struct {
	h hash.Hash
	s *Schema
}

func newFingerprinter() *fingerprinter { return &fingerprinter{h: sha256.New(), s: &Schema{}} }

func (f *fingerprinter) add(kind, body string) {
	fmt.Fprintf(f.h, "%s\t%s\n", kind, strings.TrimSpace(body))
	f.s.Objects++
	if fs := strings.Fields(body); kind == "relation" && len(fs) >= 3 && (fs[len(fs)-2] == "r" || fs[len(fs)-2] == "p") {
		f.s.Tables++ // "<schema>.<name> <relkind> <persistence>": plain and partitioned tables
	}
}

func (f *fingerprinter) schema() *Schema {
	f.s.Fingerprint = hex.EncodeToString(f.h.Sum(nil))
	return f.s
}

// Same says whether two schemas are known to be the same. An unknown one
// (nil: not recorded, or the catalog could not be read) is never the same:
// a decision on it takes the safe side.
func Same(a, b *Schema) bool {
	return a != nil && b != nil && a.Fingerprint != "" && a.Fingerprint == b.Fingerprint
}

// Change reads as "schema: 42 tables -> 45; fingerprint a1b2c3d4e5f6 ->
// c3d4e5f6a1b2" (from, to), "schema unchanged (42 tables, fingerprint
// a1b2c3d4e5f6)", or says which side is unknown.
func Change(from, to *Schema) string {
	switch {
	case from == nil && to == nil:
		return "schema unknown on both sides"
	case from == nil:
		return fmt.Sprintf("schema: unknown -> %d tables; fingerprint unknown -> %s", to.Tables, to.Short())
	case to == nil:
		return fmt.Sprintf("schema: %d tables -> unknown; fingerprint %s -> unknown", from.Tables, from.Short())
	case Same(from, to):
		return fmt.Sprintf("schema unchanged (%d tables, fingerprint %s)", from.Tables, from.Short())
	}
	return fmt.Sprintf("schema: %d tables -> %d; fingerprint %s -> %s", from.Tables, to.Tables, from.Short(), to.Short())
}
