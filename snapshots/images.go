package snapshots

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/registry"
)

// SnapshotTag is the tag a snapshot gives its images: it keeps them from a
// registry's clean-up for as long as the tag stays.
func SnapshotTag(id string) string { return "snapshot-" + id }

// RegistryAuth is how to reach the registry (empty: docker's credential
// helpers and config, else anonymous).
type RegistryAuth = registry.Auth

// RegistryAuthFrom resolves registry.username/password.
func RegistryAuthFrom(cfg *config.Config, res *config.Resolver) (RegistryAuth, error) {
	return registry.AuthFrom(cfg, res)
}

// TagImage tags image (repository@sha256:...) as <repository>:snapshot-<id>
// in its registry, with go-containerregistry: one manifest PUT by digest,
// no layer moves. It returns the tag's reference.
func TagImage(ctx context.Context, image, id string, auth RegistryAuth) (string, error) {
	ref, err := name.NewDigest(image)
	if err != nil {
		return "", fmt.Errorf("image %q is not pinned by digest: %w", image, err)
	}
	tag := ref.Context().Tag(SnapshotTag(id))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	opts := registry.Options(ctx, auth)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return "", fmt.Errorf("reading %s from its registry: %w", image, err)
	}
	if err := remote.Tag(tag, desc, opts...); err != nil {
		return "", fmt.Errorf("tagging %s as %s: %w", image, tag, err)
	}
	return tag.String(), nil
}
