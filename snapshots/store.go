package snapshots

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lawsker/lawsker-deploy/remote"
)

// Store keeps snapshot files under keys ("<id>/<file>").
type Store interface {
	// Put streams r into key and returns its size and SHA-256; a partial
	// write leaves no object behind.
	Put(ctx context.Context, key string, r io.Reader) (Artifact, error)
	// Open streams key back.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns the keys under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// String names the store for messages.
	String() string
}

// ErrNotFound is wrapped when a key does not exist.
var ErrNotFound = errors.New("not in the snapshot store")

func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "..") || strings.ContainsAny(key, "\\\x00\n") {
		return fmt.Errorf("snapshot store: bad key %q", key)
	}
	return nil
}

// hashingReader counts and hashes what passes through.
type hashingReader struct {
	r    io.Reader
	h    interface{ Write([]byte) (int, error) }
	sum  func() []byte
	size int64
}

func newHashing(r io.Reader) *hashingReader {
	h := sha256.New()
	return &hashingReader{r: r, h: h, sum: func() []byte { return h.Sum(nil) }}
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	if n > 0 {
		hr.h.Write(p[:n])
		hr.size += int64(n)
	}
	return n, err
}

func (hr *hashingReader) artifact(key string) Artifact {
	return Artifact{Key: key, Size: hr.size, SHA256: hex.EncodeToString(hr.sum())}
}

// FileStore is a folder on this machine (file:///path URLs).
type FileStore struct{ Dir string }

func (s FileStore) String() string { return "file://" + s.Dir }

func (s FileStore) path(key string) string { return filepath.Join(s.Dir, filepath.FromSlash(key)) }

// Put writes to a temporary file and renames it into place.
func (s FileStore) Put(ctx context.Context, key string, r io.Reader) (Artifact, error) {
	if err := checkKey(key); err != nil {
		return Artifact{}, err
	}
	p := s.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return Artifact{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".partial-")
	if err != nil {
		return Artifact{}, err
	}
	defer os.Remove(tmp.Name())
	hr := newHashing(r)
	if _, err := io.Copy(tmp, &ctxReader{ctx, hr}); err != nil {
		tmp.Close()
		return Artifact{}, fmt.Errorf("%s: writing %s: %w", s, key, err)
	}
	if err := tmp.Close(); err != nil {
		return Artifact{}, err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return Artifact{}, err
	}
	return hr.artifact(key), nil
}

// Open opens a stored file.
func (s FileStore) Open(_ context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	}
	return f, err
}

// List walks the folder.
func (s FileStore) List(_ context.Context, prefix string) ([]string, error) {
	var keys []string
	err := filepath.WalkDir(s.Dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".partial-") {
			return nil
		}
		rel, _ := filepath.Rel(s.Dir, p)
		if k := filepath.ToSlash(rel); strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
		return nil
	})
	sort.Strings(keys)
	return keys, err
}

// Delete removes a file (and its folder when empty).
func (s FileStore) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(filepath.Dir(s.path(key)))
	return nil
}

// TargetStore keeps snapshots on the target host, over SFTP (the default:
// no extra infrastructure).
type TargetStore struct {
	Host *remote.Host
	Dir  string // <root>/<app>/snapshots
}

func (s TargetStore) String() string { return "target:" + s.Dir }

// Put streams into a temporary file on the target, then renames it.
func (s TargetStore) Put(ctx context.Context, key string, r io.Reader) (Artifact, error) {
	if err := checkKey(key); err != nil {
		return Artifact{}, err
	}
	hr := newHashing(r)
	if _, err := s.Host.WriteFrom(path.Join(s.Dir, key), &ctxReader{ctx, hr}, 0o600); err != nil {
		return Artifact{}, fmt.Errorf("%s: writing %s: %w", s, key, err)
	}
	return hr.artifact(key), nil
}

// Open streams a stored file from the target.
func (s TargetStore) Open(_ context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	fs, err := s.Host.Files()
	if err != nil {
		return nil, err
	}
	f, err := fs.Open(path.Join(s.Dir, key))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "not exist") {
			return nil, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
		}
		return nil, err
	}
	return f, nil
}

// List walks the snapshot folder on the target.
func (s TargetStore) List(_ context.Context, prefix string) ([]string, error) {
	fs, err := s.Host.Files()
	if err != nil {
		return nil, err
	}
	var keys []string
	w := fs.Walk(s.Dir)
	for w.Step() {
		if w.Err() != nil {
			if errors.Is(w.Err(), os.ErrNotExist) || strings.Contains(w.Err().Error(), "not exist") {
				return nil, nil
			}
			return nil, w.Err()
		}
		if w.Stat().IsDir() || strings.Contains(path.Base(w.Path()), ".tmp-") {
			continue
		}
		k := strings.TrimPrefix(strings.TrimPrefix(w.Path(), s.Dir), "/")
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// Delete removes a stored file.
func (s TargetStore) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.Host.Remove(path.Join(s.Dir, key))
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
