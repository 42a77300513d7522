package builds

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

func files(paths ...string) func(string) bool {
	set := map[string]bool{}
	for _, p := range paths {
		set[p] = true
	}
	return func(p string) bool { return set[p] }
}

func backend(extra func(*config.Backend)) config.Backend {
	b := config.Backend{Context: "backend", Port: 8000, PortEnv: "PORT", ASGIApp: "app.main:app"}
	if extra != nil {
		extra(&b)
	}
	return b
}

func TestPlanBackend(t *testing.T) {
	p, err := PlanBackend(backend(nil), files("backend/Dockerfile", "backend/requirements.txt"))
	require.NoError(t, err)
	assert.Equal(t, &BackendPlan{Recipe: RecipeDockerfile, Context: "backend", Dockerfile: "Dockerfile"}, p, "a Dockerfile wins over the preset")

	p, err = PlanBackend(backend(nil), files("backend/requirements.txt", "backend/app/main.py"))
	require.NoError(t, err)
	assert.Equal(t, RecipePython, p.Recipe)
	assert.Equal(t, PythonImage, p.BaseImage)
	assert.Equal(t, []string{"sh", "-c", `exec uvicorn app.main:app --host 0.0.0.0 --port "${PORT:-8000}" --proxy-headers`}, p.Command)

	p, err = PlanBackend(backend(func(b *config.Backend) { b.Dockerfile = "deploy/prod.Dockerfile" }), files("backend/deploy/prod.Dockerfile"))
	require.NoError(t, err)
	assert.Equal(t, "deploy/prod.Dockerfile", p.Dockerfile)

	_, err = PlanBackend(backend(func(b *config.Backend) { b.Dockerfile = "missing.Dockerfile" }), files("backend/Dockerfile"))
	assert.EqualError(t, err, "backend.dockerfile: backend/missing.Dockerfile does not exist in the source")
	_, err = PlanBackend(backend(nil), files("backend/main.go"))
	assert.ErrorContains(t, err, "the backend folder backend has no Dockerfile and no requirements.txt")
	_, err = PlanBackend(backend(func(b *config.Backend) { b.Context = "../elsewhere" }), files())
	assert.ErrorContains(t, err, "must be a folder inside the source")
}

func TestPlanFrontend(t *testing.T) {
	f := &config.Frontend{Source: "frontend", Output: "dist", BuildCommand: []string{"npm", "run", "build"}}
	p, err := PlanFrontend(f, files("frontend/package.json", "frontend/package-lock.json"))
	require.NoError(t, err)
	assert.Equal(t, &FrontendPlan{Recipe: RecipeNpm, Source: "frontend", Output: "dist", Image: NodeImage,
		Steps: [][]string{{"npm", "ci", "--no-audit", "--no-fund"}, {"npm", "run", "build"}}}, p)

	_, err = PlanFrontend(f, files("frontend/package.json"))
	assert.ErrorContains(t, err, "no package-lock.json")

	p, err = PlanFrontend(f, files("frontend/index.html"))
	require.NoError(t, err)
	assert.Equal(t, &FrontendPlan{Recipe: RecipeStatic, Source: "frontend", Output: "."}, p)
	p, err = PlanFrontend(f, files("frontend/dist/index.html"))
	require.NoError(t, err)
	assert.Equal(t, "dist", p.Output, "prebuilt files committed in the output folder")

	_, err = PlanFrontend(f, files("frontend/README.md"))
	assert.ErrorContains(t, err, "has neither package.json (to build) nor index.html")
	_, err = PlanFrontend(nil, files())
	assert.Error(t, err)
}

func TestImageTag(t *testing.T) {
	tag, err := ImageTag("3F9A1C2E4B5D6E7F8091A2B3C4D5E6F708192A3B", "")
	require.NoError(t, err)
	assert.Equal(t, "git-3f9a1c2e4b5d", tag)
	tag, err = ImageTag("", "sha256:0123456789abcdef0123")
	require.NoError(t, err)
	assert.Equal(t, "src-0123456789ab", tag)
	_, err = ImageTag("main", "")
	assert.EqualError(t, err, `git sha "main" is not a commit id (7-40 hex digits)`)
	_, err = ImageTag("", "")
	assert.Error(t, err)
	assert.Equal(t, "ghcr.io/acme/web-frontend", FrontendRepository("ghcr.io/acme/web"))
}

func TestRehearsalSnapshotAndImage(t *testing.T) {
	withDB := func(id, version string) *snapshots.Manifest {
		return &snapshots.Manifest{ID: id, Created: time.Now(), Artifacts: map[snapshots.Component]snapshots.Artifact{"database": {Key: id + "/database.dump"}},
			Database: &snapshots.DatabaseInfo{Name: "lawsker", ServerVersion: version}}
	}
	noDB := &snapshots.Manifest{ID: "snap_20261126_050000_cccccc", Artifacts: map[snapshots.Component]snapshots.Artifact{"config": {}}}
	ms := []*snapshots.Manifest{noDB, withDB("snap_20261126_040000_bbbbbb", "15.18 (Debian 15.18-0+deb12u1)"), withDB("snap_20261126_030000_aaaaaa", "14.2")}
	m, err := RehearsalSnapshot(ms, "")
	require.NoError(t, err)
	assert.Equal(t, "snap_20261126_040000_bbbbbb", m.ID, "the newest with a dump")
	m, err = RehearsalSnapshot(ms, "snap_20261126_030000_aaaaaa")
	require.NoError(t, err)
	assert.Equal(t, "postgres:14-bookworm", PostgresImage(m.Database.ServerVersion))
	_, err = RehearsalSnapshot(ms, noDB.ID)
	assert.EqualError(t, err, "snapshot snap_20261126_050000_cccccc has no database dump to rehearse on")
	_, err = RehearsalSnapshot(ms, "snap_20200101_000000_000000")
	assert.EqualError(t, err, "no snapshot snap_20200101_000000_000000 in the store")
	m, err = RehearsalSnapshot(nil, "")
	assert.NoError(t, err)
	assert.Nil(t, m, "no snapshot: an empty database")

	assert.Equal(t, "postgres:15-bookworm", PostgresImage("15.18 (Debian 15.18-0+deb12u1)"))
	assert.Equal(t, "postgres:16-bookworm", PostgresImage(""))
}

func TestPinnedRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	ref, err := PinnedRef("127.0.0.1:5000/sample/backend:git-3f9a1c2e4b5d@" + d)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:5000/sample/backend@"+d, ref)
	ref, err = PinnedRef("ghcr.io/acme/web@" + d)
	require.NoError(t, err)
	assert.Equal(t, "ghcr.io/acme/web@"+d, ref)
	_, err = PinnedRef("ghcr.io/acme/web:latest")
	assert.ErrorContains(t, err, "not a reference with a digest")
}
