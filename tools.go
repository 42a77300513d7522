//go:build tools

package main

// Modules the project has chosen and pinned before every one is used by a
// package (the build tag keeps them out of every build):
//   - dagger.io/dagger: imported by the generated bindings only (git-ignored);
//     hack/daggercheck type-checks main.go against it.
//   - github.com/dagger/otel-go: imported by the code `dagger develop`
//     generates (DAGGER.md); required so the engine's codegen finds it.
//   - pgx, go-redis, lego: the PostgreSQL, Redis and ACME clients the
//     verification, snapshot and TLS packages are built on.
import (
	_ "dagger.io/dagger"
	_ "github.com/dagger/otel-go"
	_ "github.com/go-acme/lego/v4/lego"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/redis/go-redis/v9"
)
