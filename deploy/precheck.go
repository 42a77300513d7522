package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/registry"
)

// checkBeforeLock refuses, before any target is touched, a deploy that
// would fail later: a secret reference without a value, or an image the
// registry says it does not have. A registry that cannot be asked from
// here (down, or only the targets reach it) is not a refusal: the target's
// pull says more.
func checkBeforeLock(req Request) error {
	if req.Resolver != nil {
		if ps := req.Config.CheckSecrets(req.Resolver); len(ps) > 0 {
			return fmt.Errorf("nothing was changed (the lock was not taken): %w", ps)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return ImageInRegistry(ctx, req.Config, req.Resolver, req.Image)
}

// ImageInRegistry asks the image's registry for its manifest (a HEAD by
// digest). It fails only on the registry's own "not found" (or "denied"
// with the configured credentials); an unreachable registry is not an
// error here.
func ImageInRegistry(ctx context.Context, cfg *config.Config, res *config.Resolver, image string) error {
	ref, err := name.NewDigest(image)
	if err != nil {
		return fmt.Errorf("--backend-image %q: %w", image, err)
	}
	var auth registry.Auth
	if res != nil {
		if auth, err = registry.AuthFrom(cfg, res); err != nil {
			return err
		}
	}
	_, err = remote.Head(ref, registry.Options(ctx, auth)...)
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("--backend-image %s: the registry has no such manifest (was it pushed? is the digest right?); nothing was changed (the lock was not taken)", image)
		case http.StatusUnauthorized, http.StatusForbidden:
			if cfg.Registry != nil && cfg.Registry.Username != "" {
				return fmt.Errorf("--backend-image %s: the registry refused registry.username %q (%d); nothing was changed (the lock was not taken)", image, cfg.Registry.Username, terr.StatusCode)
			}
		}
	}
	return nil // found, or not known from here
}
