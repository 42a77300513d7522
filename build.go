package main

// The containerized half: builds, the migration rehearsal and publishing.
// What decides (which recipe, which tag, which snapshot, which PostgreSQL)
// is package builds; this file turns its plans into containers.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/lawsker/lawsker-deploy/builds"
	cfgpkg "github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/internal/pgconfig"
	"github.com/lawsker/lawsker-deploy/rollout"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// BuildBackend builds the backend image from the module's source.
//
// The backend folder's Dockerfile (backend.context, backend.dockerfile)
// when there is one, else the Python preset (a slim Python image, `pip
// install -r requirements.txt` with a pip cache volume, uvicorn serving
// backend.asgi_app).
func (m *LawskerDeploy) BuildBackend(ctx context.Context) (*dagger.Container, error) {
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	c, _, err := buildBackend(ctx, m.Source, cfg)
	if err == nil {
		_, err = c.Sync(ctx)
	}
	return c, flatten(err)
}

// BuildFrontend returns the frontend's built files.
//
// `npm ci` and the build command (frontend.build_command) in a Node image
// with an npm cache volume when frontend.source has a package.json, else
// its files as they are (frontend.output, a committed dist/ included).
func (m *LawskerDeploy) BuildFrontend(ctx context.Context) (*dagger.Directory, error) {
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	d, err := buildFrontend(ctx, m.Source, cfg)
	if err == nil {
		_, err = d.Sync(ctx)
	}
	return d, flatten(err)
}

// RehearseMigrations runs the migrations in the freshly built backend image against a throwaway PostgreSQL.
//
// backend.migrate_command runs before production sees the migration. With
// a snapshot store configured, the throwaway database is first loaded with
// a snapshot's dump (--from-snapshot, or the newest snapshot with a
// database), so the migration is rehearsed on a copy of production data.
// Prints the migration's output and what it changed: the migration version
// and the schema, before and after, read from PostgreSQL's catalog.
// +cache="never"
func (m *LawskerDeploy) RehearseMigrations(
	ctx context.Context,
	// The snapshot whose database the rehearsal starts from (default: the newest with a dump).
	// +optional
	fromSnapshot string,
	// Rehearse on an empty database, without reading the snapshot store.
	// +optional
	emptyDatabase bool,
) (string, error) {
	env, err := m.env(ctx, usesStore(!emptyDatabase))
	if err != nil {
		return "", err
	}
	defer env.cleanup()
	backend, _, err := buildBackend(ctx, m.Source, env.cfg)
	if err != nil {
		return "", err
	}
	out, err := rehearse(ctx, env, backend, fromSnapshot, emptyDatabase, "--empty-database rehearses without it")
	if err != nil {
		return "", failed("rehearse-migrations", err, "")
	}
	return out, nil
}

// Publish builds the backend image and a frontend image and pushes both; prints both references pinned by digest.
//
// The frontend image is nginx serving the built files. Both are tagged
// with the git commit (--git-sha, e.g. $GITHUB_SHA; else the source's
// content digest) and pushed to the registry of backend.image; the backend
// reference comes first.
// +cache="never"
func (m *LawskerDeploy) Publish(
	ctx context.Context,
	// The registry password or token (registry.username logs in with it); or pass it in the module's --secrets.
	// +optional
	registryPassword *dagger.Secret,
	// The commit the images are tagged with.
	// +optional
	gitSha string,
) (string, error) {
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return "", err
	}
	if registryPassword == nil && cfg.Registry != nil && cfg.Registry.Username != "" && !cfg.Registry.Password.IsZero() && len(m.Secrets) > 0 {
		res, err := m.secretValues(ctx, cfg, nil)
		if err != nil {
			return "", err
		}
		if pw, err := res.Resolve(cfg.Registry.Password); err == nil {
			registryPassword = dag.SetSecret("lawsker-registry-password", pw)
		}
	}
	backend, _, err := buildBackend(ctx, m.Source, cfg)
	if err != nil {
		return "", err
	}
	var frontend *dagger.Directory
	if cfg.Frontend != nil {
		if frontend, err = buildFrontend(ctx, m.Source, cfg); err != nil {
			return "", err
		}
	}
	refs, err := publish(ctx, m.Source, cfg, backend, frontend, registryPassword, gitSha)
	if err != nil {
		return "", failed("publish", err, "")
	}
	return strings.Join(refs, "\n") + "\n", nil
}

// existsIn reports whether a regular file exists in dir; the first error
// is kept in *errp (a plan made on a failed lookup is discarded).
func existsIn(ctx context.Context, dir *dagger.Directory, errp *error) func(string) bool {
	return func(rel string) bool {
		ok, err := dir.Exists(ctx, rel, dagger.DirectoryExistsOpts{ExpectedType: dagger.ExistsTypeRegularType})
		if err != nil && *errp == nil {
			*errp = err
		}
		return ok
	}
}

func buildBackend(ctx context.Context, source *dagger.Directory, cfg *cfgpkg.Config) (*dagger.Container, *builds.BackendPlan, error) {
	var lookupErr error
	plan, err := builds.PlanBackend(cfg.Backend, existsIn(ctx, source, &lookupErr))
	if lookupErr != nil {
		return nil, nil, lookupErr
	}
	if err != nil {
		return nil, nil, err
	}
	dir := source.Directory(plan.Context)
	switch plan.Recipe {
	case builds.RecipeDockerfile:
		return dir.DockerBuild(dagger.DirectoryDockerBuildOpts{Dockerfile: plan.Dockerfile}), plan, nil
	case builds.RecipePython:
		c := dag.Container().From(plan.BaseImage).
			WithEnvVariable("PYTHONDONTWRITEBYTECODE", "1").
			WithEnvVariable("PYTHONUNBUFFERED", "1").
			WithEnvVariable("PIP_DISABLE_PIP_VERSION_CHECK", "1").
			WithWorkdir("/app").
			WithMountedCache("/root/.cache/pip", dag.CacheVolume("lawsker-deploy-pip")).
			WithFile("/app/"+plan.Requirements, dir.File(plan.Requirements)).
			WithExec([]string{"pip", "install", "-r", plan.Requirements}).
			WithDirectory("/app", dir).
			WithExposedPort(plan.Port).
			WithEntrypoint(plan.Command)
		return c, plan, nil
	}
	return nil, nil, fmt.Errorf("unknown backend recipe %q", plan.Recipe)
}

func buildFrontend(ctx context.Context, source *dagger.Directory, cfg *cfgpkg.Config) (*dagger.Directory, error) {
	var lookupErr error
	plan, err := builds.PlanFrontend(cfg.Frontend, existsIn(ctx, source, &lookupErr))
	if lookupErr != nil {
		return nil, lookupErr
	}
	if err != nil {
		return nil, err
	}
	dir := source.Directory(plan.Source)
	if plan.Recipe == builds.RecipeStatic {
		return dir.Directory(plan.Output), nil
	}
	c := dag.Container().From(plan.Image).
		WithMountedCache("/root/.npm", dag.CacheVolume("lawsker-deploy-npm")).
		WithDirectory("/src", dir).
		WithWorkdir("/src")
	for _, step := range plan.Steps {
		c = c.WithExec(step)
	}
	return c.Directory(path.Join("/src", plan.Output)), nil
}

// publish pushes the backend image (and the frontend image when there is a
// frontend) and returns their references pinned by digest.
func publish(ctx context.Context, source *dagger.Directory, cfg *cfgpkg.Config, backend *dagger.Container, frontend *dagger.Directory, password *dagger.Secret, gitSha string) ([]string, error) {
	digest, err := source.Digest(ctx)
	if err != nil {
		return nil, err
	}
	tag, err := builds.ImageTag(gitSha, digest)
	if err != nil {
		return nil, err
	}
	auth := func(c *dagger.Container) *dagger.Container {
		if reg := cfg.Registry; reg != nil && reg.Username != "" && password != nil {
			return c.WithRegistryAuth(reg.Host, reg.Username, password)
		}
		return c
	}
	images := []struct {
		c    *dagger.Container
		repo string
	}{{backend, cfg.Backend.Image}}
	if frontend != nil {
		web := dag.Container().From("nginx:1.27-alpine").WithDirectory("/usr/share/nginx/html", frontend)
		images = append(images, struct {
			c    *dagger.Container
			repo string
		}{web, builds.FrontendRepository(cfg.Backend.Image)})
	}
	refs := make([]string, len(images))
	errs := make([]error, len(images))
	var wg sync.WaitGroup
	for i, im := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := auth(im.c).Publish(ctx, im.repo+":"+tag)
			if err == nil {
				out, err = builds.PinnedRef(out)
			}
			refs[i], errs[i] = out, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("publishing: %w", err)
	}
	return refs, nil
}

// rehearse runs the migrations in backend against a throwaway PostgreSQL,
// loaded with a snapshot's dump unless emptyDatabase.
// without says how to go on without the snapshot store ("--empty-database
// rehearses without it", or deploy's --skip-rehearsal).
func rehearse(ctx context.Context, env *runEnv, backend *dagger.Container, fromSnapshot string, emptyDatabase bool, without string) (string, error) {
	cfg := env.cfg
	if len(cfg.Backend.MigrateCommand) == 0 {
		return "no backend.migrate_command: nothing to rehearse\n", nil
	}
	if cfg.Database == nil {
		return "", errors.New("backend.migrate_command needs a database section to rehearse against")
	}
	db := cfg.Database
	var snap *snapshots.Manifest
	var dump *dagger.File
	if !emptyDatabase {
		store, err := rollout.OpenStore(ctx, cfg, env.res)
		if err != nil {
			return "", env.red.Error(fmt.Errorf("rehearsal: opening the snapshot store (%s): %w", without, err))
		}
		defer store.Close()
		ms, _ := snapshots.List(ctx, store.Store)
		if snap, err = builds.RehearsalSnapshot(ms, fromSnapshot); err != nil {
			return "", err
		}
		if snap != nil {
			id, err := snapshots.Identity(cfg, env.res)
			if err != nil {
				return "", err
			}
			// The module's scratch folder: the engine reads the dump from
			// there (it never leaves this session).
			f, err := os.Create("rehearsal.dump")
			if err != nil {
				return "", err
			}
			err = snapshots.ReadArtifact(ctx, store.Store, snap.ID, snap.Artifacts[snapshots.ComponentDatabase], id, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", env.red.Error(err)
			}
			defer os.Remove("rehearsal.dump")
			dump = dag.CurrentModule().WorkdirFile("rehearsal.dump")
		}
	}
	image := builds.PostgresImage("")
	if snap != nil {
		image = builds.PostgresImage(snap.Database.ServerVersion)
	}
	var b [18]byte
	_, _ = rand.Read(b[:])
	pw := hex.EncodeToString(b[:])
	env.red.Add(pw)
	password := dag.SetSecret("lawsker-rehearsal-password", pw)
	svc, err := dag.Container().From(image).
		WithEnvVariable("POSTGRES_USER", db.User).
		WithEnvVariable("POSTGRES_DB", db.Name).
		WithSecretVariable("POSTGRES_PASSWORD", password).
		WithExposedPort(5432).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true}).
		Start(ctx)
	if err != nil {
		return "", fmt.Errorf("starting the rehearsal database (%s): %w", image, err)
	}
	defer svc.Stop(context.WithoutCancel(ctx))
	client := dag.Container().From(image).
		WithServiceBinding("db", svc).
		WithSecretVariable("PGPASSWORD", password).
		WithEnvVariable("PGHOST", "db").WithEnvVariable("PGUSER", db.User).WithEnvVariable("PGDATABASE", db.Name).
		WithExec([]string{"sh", "-c", "until pg_isready -q; do sleep 0.5; done"})
	var out strings.Builder
	if dump != nil {
		if _, err := client.WithFile("/rehearsal.dump", dump).
			WithExec([]string{"pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--jobs", "2", "-d", db.Name, "/rehearsal.dump"}).
			Sync(ctx); err != nil {
			return "", fmt.Errorf("loading snapshot %s into the rehearsal database: %w", snap.ID, err)
		}
		fmt.Fprintf(&out, "rehearsal database: %s, loaded with snapshot %s (%s, %s, %s)\n", image, snap.ID, snap.Created.Format("2006-01-02 15:04"), snap.Database.Migration(), snap.Database.Schema.Describe())
	} else {
		fmt.Fprintf(&out, "rehearsal database: %s, empty\n", image)
	}
	// What the migration did to the schema, from the catalog (whatever the
	// migration tool).
	// Each read carries its own nonce: the engine caches an exec by its
	// inputs, and the read after the migration has the same inputs as the
	// one before (the database changed outside the container).
	schema := func(when string) *dbschema.Schema {
		var n [8]byte
		_, _ = rand.Read(n[:])
		v, err := client.WithEnvVariable("LAWSKER_SCHEMA_READ", when+"-"+hex.EncodeToString(n[:])).
			WithExec([]string{"psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", "COPY (" + dbschema.Query + ") TO STDOUT"}).Stdout(ctx)
		if err != nil {
			return nil
		}
		s, err := dbschema.FromCopy(v)
		if err != nil {
			return nil
		}
		return s
	}
	before := schema("before")
	url := dag.SetSecret("lawsker-rehearsal-url", pgconfig.URL(cfgpkg.Database{Host: "db", Port: 5432, User: db.User, Name: db.Name, SSLMode: "disable"}, pw))
	mig := backend.WithServiceBinding("db", svc).WithSecretVariable(db.URLEnv, url)
	for k, v := range cfg.Backend.Env {
		mig = mig.WithEnvVariable(k, v)
	}
	for k, ref := range cfg.Backend.SecretEnv {
		if k == db.URLEnv {
			continue
		}
		if v, err := env.res.Resolve(ref); err == nil {
			env.red.Add(v)
			mig = mig.WithSecretVariable(k, dag.SetSecret("lawsker-rehearsal-"+strings.ToLower(k), v))
		}
	}
	logs, err := mig.WithExec(cfg.Backend.MigrateCommand).Stdout(ctx)
	if err != nil {
		return "", env.red.Error(fmt.Errorf("the migration failed in rehearsal (production is untouched): %w\n%s", flatten(err), strings.TrimRight(out.String(), "\n")))
	}
	fmt.Fprintf(&out, "`%s`:\n%s\n%s\n", strings.Join(cfg.Backend.MigrateCommand, " "), strings.TrimSpace(logs), dbschema.Change(before, schema("after")))
	return env.red.String(out.String()), nil
}
