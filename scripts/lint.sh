#!/usr/bin/env bash
# gofmt, a tidy go.mod, go vet, the type-check of the Dagger layer against the
# pinned SDK, and actionlint over the GitHub workflows.
# The root package (main.go) imports code `dagger develop` generates; outside
# an engine it is checked by hack/daggercheck, so vet skips it here.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

files=$(find . -name '*.go' -not -path './.cache/*' -not -path './internal/dagger/*' -not -name 'dagger.gen.go')
unformatted=$(gofmt -l $files)
if [ -n "$unformatted" ]; then
  echo "lint: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
# -e: the generated internal/dagger package exists only inside the engine.
if ! go mod tidy -e -diff >/dev/null 2>&1; then
  echo "lint: go.mod/go.sum are not tidy: run 'go mod tidy -e'" >&2
  exit 1
fi
module=$(go list -m)
pkgs=$(go list -e ./... | grep -v -x "$module")
go vet $pkgs
# The sample app is a module of its own (its Dockerfile builds it alone).
(cd examples/sample/backend && go mod tidy -diff >/dev/null 2>&1 || { echo "lint: examples/sample/backend: go.mod/go.sum are not tidy" >&2; exit 1; }; go vet ./...)
go run ./hack/daggercheck
# The GitHub workflows (actionlint is built by scripts/setup-testenv.sh).
actionlint=.cache/bin/actionlint
[ -x "$actionlint" ] || actionlint=$(command -v actionlint || true)
if [ -z "$actionlint" ]; then
  echo "lint: actionlint is missing: run scripts/setup-testenv.sh" >&2
  exit 1
fi
"$actionlint" .github/workflows/*.yml
echo "lint: gofmt, go mod tidy, go vet, the Dagger type-check and actionlint pass"
