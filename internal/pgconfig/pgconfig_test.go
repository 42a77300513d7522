package pgconfig

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
)

func TestFor(t *testing.T) {
	db := config.Database{Host: "db.internal", Port: 6432, SSLMode: "require"}
	cc, err := For(db, "app", "pa ss'word", "lawsker_prod", nil)
	require.NoError(t, err)
	assert.Equal(t, "db.internal", cc.Host)
	assert.Equal(t, uint16(6432), cc.Port)
	assert.Equal(t, "app", cc.User)
	assert.Equal(t, "lawsker_prod", cc.Database)
	assert.Equal(t, "pa ss'word", cc.Password, "set as is, never parsed from a string")
	assert.NotNil(t, cc.TLSConfig, "sslmode require")

	called := ""
	cc, err = For(db, "app", "x", "postgres", func(_ context.Context, addr string) (net.Conn, error) {
		called = addr
		return nil, errors.New("tunnel down")
	})
	require.NoError(t, err)
	_, err = cc.DialFunc(context.Background(), "tcp", "db.internal:6432")
	assert.EqualError(t, err, "tunnel down")
	assert.Equal(t, "db.internal:6432", called)
}

func TestURL(t *testing.T) {
	db := config.Database{Host: "db", Port: 5432, User: "lawsker", Name: "lawsker_prod", SSLMode: "disable"}
	assert.Equal(t, "postgresql://lawsker:p%40ss%2Fw0rd@db:5432/lawsker_prod?sslmode=disable", URL(db, "p@ss/w0rd"))
	db.Host = "::1"
	assert.Equal(t, "postgresql://lawsker:x@[::1]:5432/lawsker_prod?sslmode=disable", URL(db, "x"))
}
