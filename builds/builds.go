// Package builds decides how the backend and frontend are built and
// published: which recipe (the backend's Dockerfile or the Python preset;
// npm or files as they are), which image tag, which snapshot a migration
// rehearsal starts from, which PostgreSQL image it runs. The Dagger layer
// (main.go) turns these plans into containers; everything that decides is
// here, tested with `go test`.
package builds

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// Images the presets use (pinned to a major version; the digest is
// resolved at build time and recorded in the published image).
const (
	PythonImage = "python:3.12-slim-bookworm"
	NodeImage   = "node:20-bookworm-slim"
)

// Backend recipes.
const (
	RecipeDockerfile = "dockerfile"
	RecipePython     = "python"
)

// BackendPlan is how the backend image is built.
type BackendPlan struct {
	Recipe  string `json:"recipe"`
	Context string `json:"context"` // folder inside the source
	// Dockerfile recipe: the Dockerfile's path inside the context.
	Dockerfile string `json:"dockerfile,omitempty"`
	// Python preset: base image, requirements file (inside the context),
	// the command the image runs.
	BaseImage    string   `json:"base_image,omitempty"`
	Requirements string   `json:"requirements,omitempty"`
	Command      []string `json:"command,omitempty"`
	Port         int      `json:"port,omitempty"`
}

// PlanBackend picks the recipe: backend.dockerfile when set (it must
// exist), else the context's Dockerfile, else the Python preset when the
// context has requirements.txt. exists reports whether a path (relative to
// the source root) is a regular file.
func PlanBackend(b config.Backend, exists func(rel string) bool) (*BackendPlan, error) {
	ctx := path.Clean(b.Context)
	if ctx == "" || ctx == "." {
		ctx = "."
	}
	if strings.HasPrefix(ctx, "..") || path.IsAbs(ctx) {
		return nil, fmt.Errorf("backend.context %q must be a folder inside the source", b.Context)
	}
	in := func(rel string) string { return path.Join(ctx, rel) }
	if b.Dockerfile != "" {
		if !exists(in(b.Dockerfile)) {
			return nil, fmt.Errorf("backend.dockerfile: %s does not exist in the source", in(b.Dockerfile))
		}
		return &BackendPlan{Recipe: RecipeDockerfile, Context: ctx, Dockerfile: b.Dockerfile}, nil
	}
	if exists(in("Dockerfile")) {
		return &BackendPlan{Recipe: RecipeDockerfile, Context: ctx, Dockerfile: "Dockerfile"}, nil
	}
	if exists(in("requirements.txt")) {
		port := b.Port
		portEnv := b.PortEnv
		if portEnv == "" {
			portEnv = "PORT"
		}
		app := b.ASGIApp
		if app == "" {
			app = "app.main:app"
		}
		return &BackendPlan{Recipe: RecipePython, Context: ctx, BaseImage: PythonImage, Requirements: "requirements.txt", Port: port,
			// The port comes from port_env when the deploy sets it (host
			// network), else backend.port.
			Command: []string{"sh", "-c", fmt.Sprintf(`exec uvicorn %s --host 0.0.0.0 --port "${%s:-%d}" --proxy-headers`, app, portEnv, port)}}, nil
	}
	return nil, fmt.Errorf("the backend folder %s has no Dockerfile and no requirements.txt: add a Dockerfile (or backend.dockerfile), or requirements.txt for the Python preset", ctx)
}

// Frontend recipes.
const (
	RecipeNpm    = "npm"
	RecipeStatic = "static"
)

// FrontendPlan is how the frontend's files are produced.
type FrontendPlan struct {
	Recipe string     `json:"recipe"`
	Source string     `json:"source"` // folder inside the source
	Output string     `json:"output"` // folder inside Source with the files served
	Image  string     `json:"image,omitempty"`
	Steps  [][]string `json:"steps,omitempty"`
}

// PlanFrontend: `npm ci` then the build command in a Node image when the
// folder has package.json (with package-lock.json: npm ci needs it), else
// the folder's files as they are.
func PlanFrontend(f *config.Frontend, exists func(rel string) bool) (*FrontendPlan, error) {
	if f == nil {
		return nil, errors.New("the configuration has no frontend section")
	}
	src := path.Clean(f.Source)
	if strings.HasPrefix(src, "..") || path.IsAbs(src) {
		return nil, fmt.Errorf("frontend.source %q must be a folder inside the source", f.Source)
	}
	if !exists(path.Join(src, "package.json")) {
		if !exists(path.Join(src, "index.html")) && !exists(path.Join(src, f.Output, "index.html")) {
			return nil, fmt.Errorf("frontend.source %s has neither package.json (to build) nor index.html (to serve as it is)", src)
		}
		out := "."
		if !exists(path.Join(src, "index.html")) {
			out = f.Output // prebuilt output committed beside the sources
		}
		return &FrontendPlan{Recipe: RecipeStatic, Source: src, Output: out}, nil
	}
	if !exists(path.Join(src, "package-lock.json")) {
		return nil, fmt.Errorf("%s has package.json but no package-lock.json: `npm ci` needs the lock file (run npm install once and commit it)", src)
	}
	build := f.BuildCommand
	if len(build) == 0 {
		build = []string{"npm", "run", "build"}
	}
	return &FrontendPlan{Recipe: RecipeNpm, Source: src, Output: f.Output, Image: NodeImage,
		Steps: [][]string{{"npm", "ci", "--no-audit", "--no-fund"}, build}}, nil
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// ImageTag is the tag of a published image: the git commit (GITHUB_SHA in
// Actions, `git rev-parse HEAD` on a laptop), else the source folder's
// content digest, so the same sources always get the same tag.
func ImageTag(gitSHA, sourceDigest string) (string, error) {
	if gitSHA != "" {
		sha := strings.ToLower(strings.TrimSpace(gitSHA))
		if !hexSHA.MatchString(sha) {
			return "", fmt.Errorf("git sha %q is not a commit id (7-40 hex digits)", gitSHA)
		}
		return "git-" + sha[:min(12, len(sha))], nil
	}
	d := strings.TrimPrefix(sourceDigest, "sha256:")
	if len(d) < 12 || !hexSHA.MatchString(d[:12]) {
		return "", fmt.Errorf("no git sha and no usable source digest (%q)", sourceDigest)
	}
	return "src-" + d[:12], nil
}

// FrontendRepository is where the frontend image goes: beside the
// backend's, named <backend repository>-frontend.
func FrontendRepository(backendImage string) string { return backendImage + "-frontend" }

// RehearsalSnapshot picks the snapshot a migration rehearsal loads: the
// given id, or the newest one holding a database dump.
func RehearsalSnapshot(ms []*snapshots.Manifest, id string) (*snapshots.Manifest, error) {
	for _, m := range ms {
		if id != "" && m.ID != id {
			continue
		}
		if _, ok := m.Artifacts[snapshots.ComponentDatabase]; !ok || m.Database == nil {
			if id != "" {
				return nil, fmt.Errorf("snapshot %s has no database dump to rehearse on", id)
			}
			continue
		}
		return m, nil
	}
	if id != "" {
		return nil, fmt.Errorf("no snapshot %s in the store", id)
	}
	return nil, nil // none: the rehearsal runs on an empty database
}

var pgMajor = regexp.MustCompile(`^(\d+)`)

// PostgresImage is the PostgreSQL image for a rehearsal: the snapshot's
// server major version (a dump restores into the same or a newer server),
// else 16.
func PostgresImage(serverVersion string) string {
	if m := pgMajor.FindStringSubmatch(strings.TrimSpace(serverVersion)); m != nil {
		if v, err := strconv.Atoi(m[1]); err == nil && v >= 10 {
			return fmt.Sprintf("postgres:%d-bookworm", v)
		}
	}
	return "postgres:16-bookworm"
}

var publishedRef = regexp.MustCompile(`^(.+?)(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@(sha256:[0-9a-f]{64})$`)

// PinnedRef turns what a registry push returns (repo:tag@sha256:...) into
// the reference deploy takes (repo@sha256:...).
func PinnedRef(published string) (string, error) {
	m := publishedRef.FindStringSubmatch(strings.TrimSpace(published))
	if m == nil {
		return "", fmt.Errorf("the registry returned %q, not a reference with a digest", published)
	}
	return m[1] + "@" + m[3], nil
}

// BeforeLock says what a deploy from source runs before the lock, in
// order, for a plan: the builds, the rehearsal and publishing.
func BeforeLock(cfg *config.Config, rehearse bool) []string {
	steps := []string{fmt.Sprintf("build-backend   the backend image from %s (its Dockerfile, or the Python preset)", cfg.Backend.Context)}
	if f := cfg.Frontend; f != nil {
		steps[0] += ", in parallel with"
		steps = append(steps, fmt.Sprintf("build-frontend  %s/%s (npm ci and %s when there is a package.json, else the files as they are)", f.Source, f.Output, strings.Join(f.BuildCommand, " ")))
	}
	switch {
	case len(cfg.Backend.MigrateCommand) == 0:
		steps = append(steps, "rehearse        nothing: no backend.migrate_command")
	case !rehearse:
		steps = append(steps, "rehearse        skipped (--skip-rehearsal)")
	default:
		steps = append(steps, fmt.Sprintf("rehearse        `%s` in the new image against a throwaway PostgreSQL loaded with the newest snapshot's dump", strings.Join(cfg.Backend.MigrateCommand, " ")))
	}
	pub := "publish         " + cfg.Backend.Image
	if cfg.Frontend != nil {
		pub += " and " + FrontendRepository(cfg.Backend.Image)
	}
	return append(steps, pub+", tagged git-<sha> (--git-sha) or src-<digest>, pinned by digest")
}
