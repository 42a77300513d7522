package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Docker is the shared Docker engine started by scripts/setup-testenv.sh
// (one per machine: a daemon per test would cost seconds each). Containers
// run with --network host only.
type Docker struct {
	// Host is the DOCKER_HOST value of the engine.
	Host string
}

// PushBinaryImage builds an image of a static binary, pushes it to the
// registry and returns its reference by digest (repo@sha256:...).
// Args follow the binary in the image's CMD.
func (d *Docker) PushBinaryImage(t testing.TB, binary, repo, tag string, args ...string) string {
	t.Helper()
	ref := repo + ":" + tag
	d.ImportBinary(t, binary, ref, args...)
	d.MustRun(t, "push", "--quiet", ref)
	digest := d.MustRun(t, "inspect", "--format", "{{index .RepoDigests 0}}", ref)
	if !strings.HasPrefix(digest, repo+"@sha256:") {
		t.Fatalf("testenv: %s has no digest for %s (got %q)", ref, repo, digest)
	}
	return digest
}

// DockerEngine returns the running engine or fails the test.
func DockerEngine(t testing.TB) *Docker {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix://" + filepath.Join(RepoRoot(), ".cache", "docker", "docker.sock")
	}
	d := &Docker{Host: host}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if out, err := d.Run(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("testenv: no Docker engine at %s (scripts/setup-testenv.sh starts one): %v\n%s", host, err, out)
	}
	return d
}

// Run runs the docker CLI against this engine.
func (d *Docker) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.Host)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// MustRun is Run that fails the test.
func (d *Docker) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := d.Run(ctx, args...)
	if err != nil {
		t.Fatalf("testenv: docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ImportBinary makes an image whose only file is the static binary at
// /app/<name>, with that as its command (nothing can be pulled here), and
// removes it when the test ends.
func (d *Docker) ImportBinary(t testing.TB, binary, ref string, args ...string) {
	t.Helper()
	cmd, _ := json.Marshal(append([]string{"/app/" + filepath.Base(binary)}, args...))
	d.importBinary(t, binary, ref, "CMD "+string(cmd))
}

// ImportVictoriaLogs makes an image of the VictoriaLogs binary built by
// setup-testenv (static) as ref, the binary its ENTRYPOINT like the
// published image's: what a target runs when monitoring.logs.image is ref.
func (d *Docker) ImportVictoriaLogs(t testing.TB, ref string) {
	t.Helper()
	bin := Bin(t, "victoria-logs")
	entry, _ := json.Marshal([]string{"/app/" + filepath.Base(bin)})
	d.importBinary(t, bin, ref, "ENTRYPOINT "+string(entry))
}

func (d *Docker) importBinary(t testing.TB, binary, ref, change string) {
	t.Helper()
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	name := filepath.Base(binary)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "app/" + name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				t.Fatalf("testenv: %v", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tarPath := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	d.MustRun(t, "import", "--change", change, tarPath, ref)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = d.Run(ctx, "image", "rm", "-f", ref)
	})
}

// BuildStatic compiles a Go package of this module into a static binary
// (CGO off) for images and remote hosts, and returns its path. ldflags are
// passed to -ldflags (e.g. "-X main.version=v2").
func BuildStatic(t testing.TB, pkg, name string, ldflags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", strings.Join(ldflags, " "), "-o", out, pkg)
	cmd.Dir = RepoRoot()
	if _, err := os.Stat(filepath.Join(cmd.Dir, pkg, "go.mod")); err == nil {
		// A module of its own (the sample app): built where its go.mod is.
		cmd.Args[len(cmd.Args)-1] = "."
		cmd.Dir = filepath.Join(cmd.Dir, pkg)
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// ImportFiles makes an image of host files (host path -> path in the
// image, symlinks followed) with /tmp, and removes it when the test ends:
// a dynamically linked program with its libraries (nothing can be pulled
// here).
func (d *Docker) ImportFiles(t testing.TB, ref string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	write := func(h *tar.Header, data []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if data != nil {
			if _, err := tw.Write(data); err != nil {
				t.Fatalf("testenv: %v", err)
			}
		}
	}
	write(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	for src, dst := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		dst = strings.TrimPrefix(dst, "/")
		for dir := filepath.Dir(dst); dir != "." && !dirs[dir]; dir = filepath.Dir(dir) {
			dirs[dir] = true
			write(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
		write(&tar.Header{Name: dst, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}, data)
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tarPath := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	d.MustRun(t, "import", tarPath, ref)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = d.Run(ctx, "image", "rm", "-f", ref)
	})
}

// removeDeployed removes the containers of the deployment under base (its
// lawsker.base label): never another test's, though they share the engine.
func (d *Docker) removeDeployed(base string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := d.Run(ctx, "ps", "-aq", "--filter", "label=lawsker.base="+base)
	for _, id := range strings.Fields(out) {
		_, _ = d.Run(ctx, "rm", "-f", id)
	}
}
