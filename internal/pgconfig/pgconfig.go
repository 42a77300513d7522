// Package pgconfig builds the pgx connection configuration for the
// configured database, reached directly or the way a target reaches it (its
// SSH tunnel). Deploy's bootstrap, snapshots and the verification suite all
// connect through it.
package pgconfig

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/lawsker/lawsker-deploy/config"
)

// Dialer opens a TCP connection to addr (host:port); nil dials directly.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// For returns the configuration for user on database name of db. Every
// value in the connection string passed the configuration's formats (host,
// PostgreSQL names, the sslmode enum), so none can inject a parameter; the
// password is set on the result, never formatted into a string.
func For(db config.Database, user, password, name string, dial Dialer) (*pgx.ConnConfig, error) {
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=%s connect_timeout=10",
		db.Host, db.Port, user, name, db.SSLMode))
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	cc.Password = password
	if dial != nil {
		cc.DialFunc = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	return cc, nil
}

// URL is the postgresql:// URL of db for the backend (database.url_env):
// user, password and name escaped, sslmode as configured.
func URL(db config.Database, password string) string {
	q := url.Values{}
	if db.SSLMode != "" {
		q.Set("sslmode", db.SSLMode)
	}
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(db.User, password), Host: net.JoinHostPort(db.Host, strconv.Itoa(db.Port)), Path: "/" + db.Name, RawQuery: q.Encode()}
	return u.String()
}
