package snapshots

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// OpenStore returns the configured store: "target" keeps snapshots on the
// first target under <root>/<app>/snapshots (over SFTP), file:///path a
// folder here, s3://, gs:// and azblob:// URLs a bucket (BlobStore).
func OpenStore(ctx context.Context, cfg *config.Config, res *config.Resolver, h *remote.Host) (Store, error) {
	s := cfg.Snapshots.Store
	switch {
	case s == "target":
		t := cfg.Primary()
		return TargetStore{Host: h, Dir: path.Join(t.Root, cfg.App, "snapshots")}, nil
	case strings.HasPrefix(s, "file://"):
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("snapshots.store: %w", err)
		}
		return FileStore{Dir: u.Path}, nil
	}
	var creds *S3Credentials
	if sn := cfg.Snapshots; !sn.S3AccessKeyID.IsZero() {
		id, err := res.Resolve(sn.S3AccessKeyID)
		if err != nil {
			return nil, fmt.Errorf("snapshots.s3_access_key_id: %w", err)
		}
		secret, err := res.Resolve(sn.S3SecretAccessKey)
		if err != nil {
			return nil, fmt.Errorf("snapshots.s3_secret_access_key: %w", err)
		}
		creds = &S3Credentials{AccessKeyID: id, SecretAccessKey: secret}
	}
	return OpenBlobStore(ctx, s, creds)
}

// Current is the serving release, as the caller read it from the target.
type Current struct {
	ID          string
	Image       string // repository@sha256
	FrontendDir string // its frontend folder on the target ("" when none)
}

// CreateRequest is what a snapshot takes.
type CreateRequest struct {
	Config       *config.Config
	Resolver     *config.Resolver
	Host         *remote.Host // the first target
	Store        Store
	Current      *Current // nil before a first deploy
	Description  string
	Trigger      string // manual, pre-deploy, post-deploy
	DeploymentID string
	Now          time.Time
	// Baseline is the release's verification figures (post-deploy).
	Baseline map[string]map[string]float64
}

// Create takes a snapshot: the database dump (streamed from the target),
// the serving release's frontend as a tarball and its image by digest.
// The manifest is written last: a snapshot exists once it is complete.
func Create(ctx context.Context, req CreateRequest) (*Manifest, error) {
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	m := &Manifest{Format: FormatVersion, ID: NewID(req.Now), App: req.Config.App, DeploymentID: req.DeploymentID, Created: req.Now.UTC(),
		Description: req.Description, Trigger: req.Trigger, Artifacts: map[Component]Artifact{}, Images: map[Component]string{}, Baseline: req.Baseline}
	cleanup := func() { _ = Delete(context.WithoutCancel(ctx), req.Store, m.ID) }
	if req.Current == nil && req.Config.Database == nil {
		return nil, ErrNothing
	}
	if db := req.Config.Database; db != nil {
		pw, err := req.Resolver.Resolve(db.Password)
		if err != nil {
			return nil, fmt.Errorf("database.password: %w", err)
		}
		rcpt, err := sealFor(req.Config)
		if err != nil {
			return nil, err
		}
		art, info, err := DumpDatabase(ctx, req.Host, *db, pw, req.Store, m.ID+"/database.dump", DumpOptions{Compression: req.Config.Snapshots.DumpCompression, Recipient: rcpt})
		if err != nil {
			cleanup()
			return nil, err
		}
		m.Artifacts[ComponentDatabase], m.Database = art, info
		m.Components = append(m.Components, ComponentDatabase)
	}
	if c := req.Current; c != nil {
		m.Images[ComponentBackend] = c.Image
		m.Release = c.ID
		m.Components = append(m.Components, ComponentBackend)
		// The image is pinned by digest; the tag keeps it from registry
		// clean-ups. A registry that refuses is a warning: the digest still
		// names the image while the registry has it.
		auth, err := RegistryAuthFrom(req.Config, req.Resolver)
		var tag string
		if err == nil {
			tag, err = TagImage(ctx, c.Image, m.ID, auth)
		}
		if err != nil {
			m.Warnings = append(m.Warnings, fmt.Sprintf("image tag %s not set: %v", SnapshotTag(m.ID), err))
		} else {
			m.ImageTags = map[Component]string{ComponentBackend: tag}
		}
		if c.FrontendDir != "" {
			art, err := putTar(ctx, req.Host, req.Store, m.ID+"/frontend.tar.gz", c.FrontendDir, nil, nil)
			if err != nil {
				cleanup()
				return nil, fmt.Errorf("frontend tarball: %w", err)
			}
			m.Artifacts[ComponentFrontend] = art
			m.Components = append(m.Components, ComponentFrontend)
		}
	}
	rcpt, err := sealFor(req.Config)
	if err == nil {
		err = folderArtifacts(ctx, req, m, rcpt)
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	cfgJSON, err := config.Marshal(req.Config)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("the configuration: %w", err)
	}
	art, err := req.Store.Put(ctx, m.ID+"/config.json", bytes.NewReader(cfgJSON))
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("storing the configuration: %w", err)
	}
	m.Artifacts[ComponentConfig], m.ConfigHash = art, art.SHA256
	m.Components = append(m.Components, ComponentConfig)
	data, _ := json.MarshalIndent(m, "", "  ")
	if _, err := req.Store.Put(ctx, ManifestKey(m.ID), bytes.NewReader(data)); err != nil {
		cleanup()
		return nil, fmt.Errorf("writing the manifest: %w", err)
	}
	return m, nil
}

// ErrNothing is returned when there is nothing to snapshot: no database
// configured and no release deployed yet.
var ErrNothing = errors.New("nothing to snapshot: no database configured and no release deployed yet")

// List reads every manifest in the store, newest first; unreadable ones
// are reported, not hidden.
func List(ctx context.Context, store Store) ([]*Manifest, []error) {
	keys, err := store.List(ctx, "snap_")
	if err != nil {
		return nil, []error{err}
	}
	var out []*Manifest
	var errs []error
	for _, k := range keys {
		if !strings.HasSuffix(k, "/manifest.json") {
			continue
		}
		m, err := readManifest(ctx, store, k)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, errs
}

func readManifest(ctx context.Context, store Store, key string) (*Manifest, error) {
	r, err := store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	return ParseManifest(data)
}

// Load returns one snapshot's manifest; an unknown id's error lists the
// most recent ones.
func Load(ctx context.Context, store Store, id string) (*Manifest, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%q is not a snapshot id (snap_YYYYMMDD_HHMMSS_xxxxxx)%s", id, recent(ctx, store))
	}
	m, err := readManifest(ctx, store, ManifestKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("no snapshot %s in %s%s", id, store, recent(ctx, store))
	}
	return m, err
}

func recent(ctx context.Context, store Store) string {
	ms, _ := List(ctx, store)
	if len(ms) == 0 {
		return " (the store has no snapshots)"
	}
	var ids []string
	for i, m := range ms {
		if i == 5 {
			break
		}
		ids = append(ids, m.ID)
	}
	return "; recent: " + strings.Join(ids, ", ")
}

// Delete removes a snapshot: its manifest first (so it stops existing),
// then its files.
func Delete(ctx context.Context, store Store, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q is not a snapshot id", id)
	}
	if err := store.Delete(ctx, ManifestKey(id)); err != nil {
		return err
	}
	keys, err := store.List(ctx, id+"/")
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := store.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// Check verifies every artifact of a snapshot against its manifest.
func Check(ctx context.Context, store Store, m *Manifest) error {
	var errs []error
	for comp, a := range m.Artifacts {
		r, err := store.Open(ctx, a.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", comp, err))
			continue
		}
		h := newHashing(&ctxReader{ctx, r})
		_, err = io.Copy(io.Discard, h)
		r.Close()
		got := h.artifact(a.Key)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", comp, err))
		case got.SHA256 != a.SHA256 || got.Size != a.Size:
			errs = append(errs, fmt.Errorf("%s (%s): %w: manifest %d bytes %s, stored %d bytes %s", comp, a.Key, ErrChecksum, a.Size, a.SHA256, got.Size, got.SHA256))
		}
	}
	return errors.Join(errs...)
}
