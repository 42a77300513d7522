// Package registry holds how lawsker-deploy talks to an image registry
// with go-containerregistry: the credentials of registry.username and
// registry.password, else docker's credential helpers and config.
package registry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lawsker/lawsker-deploy/config"
)

// Auth is how to reach the registry (empty: docker's credential helpers
// and config, else anonymous).
type Auth struct{ Username, Password string }

// Options are go-containerregistry's options for a call with auth.
func Options(ctx context.Context, auth Auth) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(http.DefaultTransport)}
	if auth.Username != "" {
		return append(opts, remote.WithAuth(&authn.Basic{Username: auth.Username, Password: auth.Password}))
	}
	return append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
}

// AuthFrom resolves registry.username and registry.password.
func AuthFrom(cfg *config.Config, res *config.Resolver) (Auth, error) {
	r := cfg.Registry
	if r == nil || r.Username == "" {
		return Auth{}, nil
	}
	pw, err := res.Resolve(r.Password)
	if err != nil {
		return Auth{}, fmt.Errorf("registry.password: %w", err)
	}
	return Auth{Username: r.Username, Password: pw}, nil
}
