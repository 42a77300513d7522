package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lawsker/lawsker-deploy/internal/dagger"
)

// Lint checks the module's own source: gofmt, go vet, the Dagger layer's type-check and actionlint.
//
// The type-check is of this Dagger layer against the pinned SDK; actionlint
// runs over the GitHub workflows.
// +check
func (m *LawskerDeploy) Lint(
	ctx context.Context,
	// The module's source.
	// +defaultPath="/"
	// +ignore=[".cache", "reports", "logs", "bin", "dagger.gen.go", "internal/dagger", "internal/querybuilder", "internal/telemetry"]
	source *dagger.Directory,
) error {
	_, err := goContainer(source).
		WithExec([]string{"go", "install", "github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"}).
		WithExec([]string{"bash", "scripts/lint.sh"}).Sync(ctx)
	return execErr("lint", err)
}

// Test runs the whole test suite (.ci/run) in a privileged Debian container, the way CI runs it on a bare machine.
//
// Unit and integration tests against real PostgreSQL, Redis, Docker, sshd,
// nginx, registry, S3, ACME and Prometheus servers on loopback.
// +check
func (m *LawskerDeploy) Test(
	ctx context.Context,
	// The module's source.
	// +defaultPath="/"
	// +ignore=[".cache", "reports", "logs", "bin", "dagger.gen.go", "internal/dagger", "internal/querybuilder", "internal/telemetry"]
	source *dagger.Directory,
) error {
	_, err := goContainer(source).
		WithMountedCache("/src/.cache/bin", dag.CacheVolume("lawsker-deploy-testenv-bin")).
		WithEnvVariable("CI", "true").
		WithExec([]string{"bash", ".ci/run"}, dagger.ContainerWithExecOpts{InsecureRootCapabilities: true}).
		Sync(ctx)
	return execErr("test", err)
}

// goContainer is the toolchain with the source mounted and Go caches.
func goContainer(source *dagger.Directory) *dagger.Container {
	return dag.Container().
		From(goImage).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume("lawsker-deploy-gomod")).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume("lawsker-deploy-gobuild")).
		WithMountedDirectory("/src", source).
		WithWorkdir("/src").
		WithEnvVariable("GOTOOLCHAIN", "local")
}

// execErr keeps the tail of a failed command's output in the error.
func execErr(what string, err error) error {
	var e *dagger.ExecError
	if errors.As(err, &e) {
		return fmt.Errorf("%s: exit %d\n%s", what, e.ExitCode, tail(e.Stdout+"\n"+e.Stderr, 60))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
