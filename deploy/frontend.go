package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/remote"
)

// Manifest lists a release's frontend files by content hash.
type Manifest struct {
	Files map[string]string `json:"files"` // relative path -> sha256
	Hash  string            `json:"hash"`  // hash of the sorted list: the frontend's identity
}

// CheckShadowed refuses a frontend with files that backend.routes send to
// the backend: nginx would never serve them.
func CheckShadowed(cfg *config.Config, m *Manifest) error {
	files := slices.Sorted(maps.Keys(m.Files))
	sh := cfg.ShadowedFiles(files)
	if len(sh) == 0 {
		return nil
	}
	more := ""
	if len(sh) > 5 {
		sh, more = sh[:5], fmt.Sprintf(" and %d more", len(sh)-5)
	}
	return fmt.Errorf("backend.routes: the frontend's %s%s would never be served (nginx sends those paths to the backend): move the files, or narrow the route", strings.Join(sh, ", "), more)
}

// LocalManifest hashes every regular file under dir. Symlinks and special
// files are refused (they would point outside the release on the target).
func LocalManifest(dir string) (*Manifest, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("frontend: %w (pass --frontend-dir with the built files)", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("frontend: %s is not a folder", dir)
	}
	m := &Manifest{Files: map[string]string{}}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("frontend: %s is not a regular file (symlinks and devices are not deployed)", rel)
		case strings.ContainsAny(rel, "\n\r\x00"):
			return fmt.Errorf("frontend: file name %q contains a control character", rel)
		}
		sum, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Files[rel] = sum
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := m.Files["index.html"]; !ok {
		return nil, fmt.Errorf("frontend: %s has no index.html; is it the build output?", dir)
	}
	m.Hash = m.treeHash()
	return m, nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (m *Manifest) treeHash() string {
	paths := m.paths()
	h := sha256.New()
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%s\n", p, m.Files[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (m *Manifest) paths() []string {
	out := make([]string, 0, len(m.Files))
	for p := range m.Files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// UploadStats says what an upload moved.
type UploadStats struct {
	Uploaded, Reused, Removed int
	Bytes                     int64
}

// UploadFrontend puts dir's files into the release's frontend folder. When
// a previous release exists, its tree is hard-linked first (cp -al) and
// only files whose hash differs are uploaded; an upload replaces the link
// by rename, so the previous release's files are never modified.
func UploadFrontend(ctx context.Context, h *remote.Host, dir, dest string, local, previous *Manifest, previousDir string) (UploadStats, error) {
	var st UploadStats
	if previous != nil && previousDir != "" {
		if _, err := h.Run(ctx, "cp", "-al", previousDir, dest); err != nil {
			return st, fmt.Errorf("frontend: reusing the previous release's files: %w", err)
		}
	} else if _, err := h.Run(ctx, "mkdir", "-p", dest); err != nil {
		return st, err
	}
	for _, rel := range local.paths() {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if previous != nil && previous.Files[rel] == local.Files[rel] {
			st.Reused++
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return st, err
		}
		if err := h.WriteFile(path.Join(dest, rel), data, 0o644); err != nil {
			return st, fmt.Errorf("frontend: %w", err)
		}
		st.Uploaded++
		st.Bytes += int64(len(data))
	}
	if previous != nil {
		var gone []string
		for rel := range previous.Files {
			if _, ok := local.Files[rel]; !ok {
				gone = append(gone, path.Join(dest, rel))
			}
		}
		sort.Strings(gone)
		for i := 0; i < len(gone); i += 200 {
			batch := gone[i:min(i+200, len(gone))]
			if _, err := h.Run(ctx, append([]string{"rm", "-f", "--"}, batch...)...); err != nil {
				return st, fmt.Errorf("frontend: removing files the new build dropped: %w", err)
			}
			st.Removed += len(batch)
		}
	}
	return st, nil
}

// ReadManifest reads a release's manifest.json (nil when absent).
func ReadManifest(h *remote.Host, p string) (*Manifest, error) {
	data, err := h.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &m, nil
}
