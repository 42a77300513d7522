package rollout

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// snapshotConfig reads the configuration a snapshot was taken with.
func snapshotConfig(ctx context.Context, store snapshots.Store, m *snapshots.Manifest) (*config.Config, error) {
	rc, err := store.Open(ctx, m.Artifacts[snapshots.ComponentConfig].Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		return nil, err
	}
	l, err := config.Parse(data, config.ImportOptions{})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: its configuration does not load with this lawsker-deploy: %w", m.ID, err)
	}
	return l.Config, nil
}

// unpackFrontend downloads the tarball, checks its SHA-256 and unpacks it
// into dir: regular files and folders only, inside dir.
func unpackFrontend(ctx context.Context, store snapshots.Store, snapshot string, a snapshots.Artifact, dir string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dir), ".frontend-*.tar.gz")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := snapshots.ReadArtifact(ctx, store, snapshot, a, nil, tmp); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(tmp)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Key, err)
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a.Key, err)
		}
		name := filepath.Clean(filepath.FromSlash(hdr.Name))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%s: entry %q leaves the frontend folder", a.Key, hdr.Name)
		}
		p := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry %q is not a regular file or folder", a.Key, hdr.Name)
		}
	}
}
