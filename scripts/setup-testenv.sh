#!/usr/bin/env bash
# Installs the real servers the test suite uses (../shared/TESTENV.md) and
# starts the one shared daemon (dockerd). Idempotent: a second run only checks.
#
#   scripts/setup-testenv.sh           install + start dockerd
#   scripts/setup-testenv.sh --check   report what is missing, install nothing
#
# Debian packages come from apt; registry, versitygw, pebble and VictoriaLogs are built with
# `go install` into .cache/bin (reused between runs: the first build takes
# minutes). Per-test servers (PostgreSQL, Redis, sshd, nginx, registry, S3,
# pebble, Prometheus) are started by the Go helpers in testenv/ on free
# loopback ports; only dockerd is shared, because a Docker engine per test
# would cost seconds each.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"
export GOTOOLCHAIN=local

log() { printf 'setup-testenv: %s\n' "$*" >&2; }

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

# Debian packages: command -> package
declare -A debs=(
  [postgres]=postgresql [pg_dump]=postgresql-client [redis-server]=redis-server
  [dockerd]=docker.io [sshd]=openssh-server [ssh-keygen]=openssh-client
  [nginx]=nginx [prometheus]=prometheus [promtool]=prometheus [wrk]=wrk [python3]=python3
)
# PostgreSQL's server binaries live in a versioned folder on Debian.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
have() { command -v "$1" >/dev/null 2>&1 || { [ -n "$pgbin" ] && [ -x "$pgbin/$1" ]; } || [ -x "/usr/sbin/$1" ]; }

missing=()
for cmd in "${!debs[@]}"; do
  have "$cmd" || missing+=("${debs[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$check_only" = 1 ]; then log "missing Debian packages: $pkgs"; exit 1; fi
  log "installing Debian packages: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# Go-built servers and tools, pinned (TESTENV.md; actionlint lints the workflows).
gotools=(
  "registry github.com/distribution/distribution/v3/cmd/registry@v3.1.2"
  "versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0"
  "pebble github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1"
  "pebble-challtestsrv github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.1"
  "actionlint github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"
  "victoria-logs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1"
)
for entry in "${gotools[@]}"; do
  name=${entry%% *}; pkg=${entry#* }
  stamp="$bin/.$name.version"
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then continue; fi
  if [ "$check_only" = 1 ]; then log "missing $name ($pkg)"; exit 1; fi
  log "building $name ($pkg) into .cache/bin (first time only)"
  # Static (CGO off): a binary can also be the whole of an image (the log store on a target).
  CGO_ENABLED=0 GOBIN="$bin" GOFLAGS=-mod=mod go install "$pkg"
  echo "$pkg" > "$stamp"
done

# dockerd: one shared engine, no bridge, no iptables (containers use --network host).
docker_root="$root/.cache/docker"
sock="$docker_root/docker.sock"
if [ "$check_only" = 1 ]; then
  DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1 || { log "dockerd is not running on $sock"; exit 1; }
  log "all servers present"; exit 0
fi
if ! DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
  mkdir -p "$docker_root/data" "$docker_root/exec"
  log "starting dockerd on $sock"
  # setsid: the daemon outlives this script and the test run's process group.
  setsid dockerd --host "unix://$sock" --data-root "$docker_root/data" --exec-root "$docker_root/exec" \
    --pidfile "$docker_root/dockerd.pid" --bridge=none --iptables=false --ip6tables=false \
    >"$docker_root/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
    log "dockerd did not start; its log:"; tail -n 30 "$docker_root/dockerd.log" >&2; exit 1
  fi
fi
log "ready (binaries in .cache/bin, DOCKER_HOST=unix://$sock)"
