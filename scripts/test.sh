#!/usr/bin/env bash
# The whole test suite, integration tests included, on a bare Debian machine
# with Go: installs and starts the real servers (scripts/setup-testenv.sh),
# lints, runs every test, fuzzes the config loader for a bounded time, and
# prints the orchestrator and deploy benchmark figures.
#
#   scripts/test.sh                  everything
#   FUZZTIME=2m scripts/test.sh      a longer fuzz run (default 20s)
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

scripts/setup-testenv.sh
export DOCKER_HOST="unix://$PWD/.cache/docker/docker.sock"

scripts/lint.sh

# Figures the integration tests measure (testenv.Figure), printed at the end.
LAWSKER_FIGURES=$(mktemp)
export LAWSKER_FIGURES
trap 'echo "== figures measured by the tests"; cat "$LAWSKER_FIGURES"; rm -f "$LAWSKER_FIGURES"' EXIT

module=$(go list -m)
pkgs=$(go list -e ./... | grep -v -x "$module")
echo "== go test (unit and integration, -race)"
# The kill matrix runs on its own below, verbose, so its table is printed.
go test -race -count=1 -timeout 20m -skip '^TestKillAtEveryStepBoundary$' $pkgs

echo "== kill matrix: the real binary SIGKILLed at every step boundary of a deploy"
go test -race -count=1 -timeout 10m -v -run '^TestKillAtEveryStepBoundary$' ./cmd/lawsker-deploy

echo "== fuzz: config loader (${FUZZTIME:-20s})"
go test ./config -run '^$' -fuzz '^FuzzParse$' -fuzztime "${FUZZTIME:-20s}"

echo "== benchmarks (figures, not pass/fail)"
go test ./pipelines -run '^$' -bench 'CriticalPath$|SchedulingOverhead' -benchtime 5x -count 3
go test ./pipelines -run '^$' -bench 'CriticalPathLatency' -benchtime 200x -count 3
# Deploy figures against the real target (sshd, Docker, nginx, registry):
# median switch back to the warm previous release, median deploy with the
# image on the host without the health gate's wait. Zero downtime (0 failed
# requests at >= 200/s during a deploy and a switch back) is TestZeroDowntime.
go test ./deploy -run '^$' -bench 'SwitchBack|DeployWarm' -benchtime 5x
# The verification suite's load generator beside wrk (same connections and
# duration, nginx serving a static file), and its peak heap over 1,000,000
# requests.
go test ./checks -run '^$' -bench 'LoadVsWrk|LoadMemory' -benchtime 1x
# Snapshot into S3 and restore of a ~200 MB database against raw
# pg_dump/pg_restore (medians of five and nine rounds), and the peak heap.
go test ./snapshots -run '^$' -bench 'SnapshotAndRestore' -benchtime 1x
# The log store (VictoriaLogs): `logs --since 10m` over 1,000,000 stored
# lines, against the store's own unsorted answer.
go test ./logstore -run '^$' -bench 'Since10mOnAMillionLines' -benchtime 1x
# Three certificates against Pebble: our issuance against lego's own
# library calls in a loop (medians of five rounds), and what ours adds per
# domain outside lego.
go test ./certs -run '^$' -bench 'IssueVsLego' -benchtime 1x
