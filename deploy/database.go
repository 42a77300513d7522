package deploy

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
)

// Dialer opens TCP connections as the target would (an SSH tunnel).
type Dialer = pgconfig.Dialer

// BootstrapResult says what BootstrapDatabase changed.
type BootstrapResult struct {
	RoleCreated, DatabaseCreated bool
}

// BootstrapDatabase makes sure the application role (with LOGIN and the
// current password) and database exist, connecting as database.admin_user
// through dial. It is idempotent. Identifiers are quoted by pgx; the
// password travels only as a SCRAM-SHA-256 verifier computed here, so no
// statement (or server log of one) carries it.
func BootstrapDatabase(ctx context.Context, db config.Database, res *config.Resolver, dial Dialer) (BootstrapResult, error) {
	var out BootstrapResult
	adminPW, err := res.Resolve(db.AdminPassword)
	if err != nil {
		return out, fmt.Errorf("database.admin_password: %w", err)
	}
	appPW, err := res.Resolve(db.Password)
	if err != nil {
		return out, fmt.Errorf("database.password: %w", err)
	}
	verifier, err := scramVerifier(appPW)
	if err != nil {
		return out, fmt.Errorf("database.password: %w", err)
	}
	conn, err := connectVia(ctx, db, db.AdminUser, adminPW, "postgres", dial)
	if err != nil {
		return out, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var conforming string
	if err := conn.QueryRow(ctx, "SHOW standard_conforming_strings").Scan(&conforming); err != nil {
		return out, fmt.Errorf("database: %w", err)
	}
	if conforming != "on" {
		return out, errors.New("database: standard_conforming_strings is off on the server; turn it on (the default since PostgreSQL 9.1) so string literals are quoted safely")
	}
	role := pgx.Identifier{db.User}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", db.User).Scan(&exists); err != nil {
		return out, fmt.Errorf("database: %w", err)
	}
	literal := "'" + verifier + "'" // base64 and $:, no quote can occur
	if exists {
		_, err = conn.Exec(ctx, "ALTER ROLE "+role+" WITH LOGIN PASSWORD "+literal)
	} else {
		_, err = conn.Exec(ctx, "CREATE ROLE "+role+" WITH LOGIN PASSWORD "+literal)
		out.RoleCreated = err == nil
	}
	if err != nil {
		return out, fmt.Errorf("database: setting up role %s: %w", db.User, err)
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db.Name).Scan(&exists); err != nil {
		return out, fmt.Errorf("database: %w", err)
	}
	name := pgx.Identifier{db.Name}.Sanitize()
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" OWNER "+role); err != nil {
			return out, fmt.Errorf("database: creating %s: %w", db.Name, err)
		}
		out.DatabaseCreated = true
	}
	if _, err := conn.Exec(ctx, "GRANT CONNECT, TEMPORARY ON DATABASE "+name+" TO "+role); err != nil {
		return out, fmt.Errorf("database: granting on %s: %w", db.Name, err)
	}
	// Inside the database: the app creates its tables (migrations) in public.
	appConn, err := connectVia(ctx, db, db.AdminUser, adminPW, db.Name, dial)
	if err != nil {
		return out, err
	}
	defer appConn.Close(context.WithoutCancel(ctx))
	if _, err := appConn.Exec(ctx, "GRANT USAGE, CREATE ON SCHEMA public TO "+role); err != nil {
		return out, fmt.Errorf("database: granting on schema public of %s: %w", db.Name, err)
	}
	return out, nil
}

func connectVia(ctx context.Context, db config.Database, user, password, database string, dial Dialer) (*pgx.Conn, error) {
	cc, err := pgconfig.For(db, user, password, database, dial)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("database: connecting to %s:%d/%s as %s from the target: %w", db.Host, db.Port, database, user, err)
	}
	return conn, nil
}

// scramVerifier computes what PostgreSQL stores for a password under
// SCRAM-SHA-256 (RFC 5802/7677, 4096 iterations, 16-byte salt), as libpq's
// PQencryptPasswordConn does. Printable ASCII only: PostgreSQL applies
// SASLprep to other characters, which this does not reproduce.
func scramVerifier(password string) (string, error) {
	for _, r := range password {
		if r < 0x20 || r > 0x7e {
			return "", errors.New("use printable ASCII characters only (PostgreSQL normalises others with SASLprep, which could make the stored verifier differ)")
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	const iterations = 4096
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(iterations) + ":" + b64(salt) + "$" + b64(stored[:]) + ":" + b64(server), nil
}
