package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ThirdParty is a real open-source application the tests deploy, built
// from the Go module proxy at a pinned version: nobody here wrote it, so it
// shows what our own sample cannot (its migration tool, its routes, its
// way of taking an address).
type ThirdParty struct {
	Module  string   // the module path, e.g. github.com/usememos/memos
	Package string   // the main package, e.g. github.com/usememos/memos/bin/memos
	Version string   // e.g. v0.21.0
	Args    []string // follow the binary in the image's CMD (e.g. "run")
}

// Binary builds the application as a static binary (CGO off) in a module
// of its own under .cache/thirdparty, which requires only it (its own
// go.mod picks every dependency), and returns the binary's path. Built
// once per version and kept there: the other tests and runs reuse it.
func (a ThirdParty) Binary(t testing.TB) string {
	t.Helper()
	name := filepath.Base(a.Package)
	dir := filepath.Join(RepoRoot(), ".cache", "thirdparty", strings.ReplaceAll(a.Module, "/", "_")+"@"+a.Version)
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	run := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("testenv: building %s@%s from the Go module proxy: go %s: %v\n%s", a.Package, a.Version, strings.Join(args, " "), err, out)
		}
		t.Logf("testenv: go %s (%s): %s", strings.Join(args, " "), a.Version, time.Since(start).Round(time.Second))
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		run("mod", "init", "lawsker.test/thirdparty")
	}
	run("get", a.Package+"@"+a.Version)
	tmp := bin + ".tmp"
	run("build", "-trimpath", "-ldflags=-s -w", "-o", tmp, a.Package)
	if err := os.Rename(tmp, bin); err != nil { // whole or not at all: a concurrent build wins harmlessly
		t.Fatalf("testenv: %v", err)
	}
	return bin
}

// ThirdPartyImage builds the application's binary and pushes it as an
// image to the target's registry, wrapped the way the sample is (the
// binary at /app/<name>, a /tmp), returning it by digest.
func (h *TargetHost) ThirdPartyImage(t testing.TB, a ThirdParty, repo string) string {
	t.Helper()
	key := repo + ":" + a.Version
	if ref, ok := h.images[key]; ok {
		return ref
	}
	ref := h.Docker.PushBinaryImage(t, a.Binary(t), h.Registry.Addr+"/"+repo, a.Version, a.Args...)
	h.images[key] = ref
	return ref
}
