#!/usr/bin/env bash
# The main job on the embedded default: a local target on this machine
# (examples/local.deploy.json). It installs the servers
# (scripts/setup-testenv.sh), starts the local target (scripts/local-target.sh:
# sshd on 127.0.0.1:2222, a registry on 127.0.0.1:5000, nginx on
# 127.0.0.1:28080), builds the CLI and the sample app's images, validates the
# configuration, shows the plan, runs preflight, deploys v1 then v2 with zero
# downtime, verifies, lists the releases, switches back to v1, and shows the
# reports.
# It verifies the deployment with the whole suite, snapshots the database,
# changes data and rolls the data back, reads Lawsker's legacy
# deployment_config.json and shows what a broken configuration gets.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
demo=.cache/demo
cfg=examples/local.deploy.json
mkdir -p "$demo/ssh" bin

say "demo secrets (generated once, kept in $demo, never printed)"
[ -f "$demo/env" ] || {
  umask 077
  rnd() { head -c "$1" /dev/urandom | base64 | tr -d '/+='; }
  printf 'SAMPLE_DB_PASSWORD=%s\nSAMPLE_SESSION_KEY=%s\nSAMPLE_LOGIN_PASSWORD=%s\n' "$(rnd 18)" "$(rnd 24)" "$(rnd 18)" > "$demo/env"
}
set -a; . "$demo/env"; set +a
grep -q '^SAMPLE_LOGIN_PASSWORD=' "$demo/env" || printf 'SAMPLE_LOGIN_PASSWORD=%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >> "$demo/env"
set -a; . "$demo/env"; set +a
echo "secrets ready: SAMPLE_DB_PASSWORD, SAMPLE_SESSION_KEY, SAMPLE_LOGIN_PASSWORD (the ssh key comes with the local target)"

say "install the servers and start the local target"
scripts/setup-testenv.sh
export DOCKER_HOST="unix://$PWD/.cache/docker/docker.sock"
scripts/local-target.sh

say "build bin/lawsker-deploy"
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" \
  -o bin/lawsker-deploy ./cmd/lawsker-deploy
bin/lawsker-deploy version

say "the sample app: backend images v1 and v2 (a static Go binary in a one-layer image), two frontends"
image() { # version -> repo@sha256 digest, pushed to the local registry
  local v=$1 work="$demo/image-$1"
  rm -rf "$work" && mkdir -p "$work/root/app" "$work/root/tmp"
  CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$v" -o "$work/root/app/backend" ./examples/sample/backend
  tar -C "$work/root" -cf "$work/layer.tar" app tmp
  docker import --change 'CMD ["/app/backend"]' "$work/layer.tar" "127.0.0.1:5000/sample/backend:$v" >/dev/null
  docker push --quiet "127.0.0.1:5000/sample/backend:$v" >/dev/null
  docker inspect --format '{{index .RepoDigests 0}}' "127.0.0.1:5000/sample/backend:$v"
}
v1=$(image v1); v2=$(image v2)
echo "v1: $v1"; echo "v2: $v2"
rm -rf "$demo/frontend-v2" && cp -r examples/sample/frontend/dist "$demo/frontend-v2"
sed -i 's/<h1>Sample app<\/h1>/<h1>Sample app, v2 frontend<\/h1>/' "$demo/frontend-v2/index.html"

say "validate $cfg (every secret must resolve)"
bin/lawsker-deploy validate --require-secrets --config "$cfg"

say "plan: the DAG deploy runs for this configuration"
bin/lawsker-deploy plan --config "$cfg"

say "preflight: can this machine reach what deploy needs?"
bin/lawsker-deploy preflight --config "$cfg"

# Just after a reload nginx's old worker may still take a connection: a
# moment's pause before reading what the new release serves.
page() { sleep 0.3; curl -sS --max-time 5 "http://127.0.0.1:28080$1"; }

say "deploy v1 (no snapshot: snapshots are the next issue)"
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v1" --frontend-dir examples/sample/frontend/dist --message "first release" --no-snapshot
echo "through nginx: backend $(page /api/v1/version), $(page / | grep -o '<h1>[^<]*</h1>')"

say "deploy v2 while a client polls through nginx (every failed request is counted)"
stop=$(mktemp); ok=0; failed=0
( while [ ! -s "$stop" ]; do
    if curl -sf --max-time 2 -o /dev/null http://127.0.0.1:28080/api/v1/health; then echo ok; else echo failed; fi
  done > "$demo/poll.log" ) &
poller=$!
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v2" --frontend-dir "$demo/frontend-v2" --message "second release" --no-snapshot
echo stop > "$stop"; wait "$poller"; rm -f "$stop"
ok=$(grep -c '^ok' "$demo/poll.log" || true); failed=$(grep -c '^failed' "$demo/poll.log" || true)
echo "through nginx: backend $(page /api/v1/version), $(page / | grep -o '<h1>[^<]*</h1>')"
echo "requests during the deploy: $ok ok, $failed failed"

say "verify: the whole suite against the deployment (table, JSON report, JUnit, Markdown)"
bin/lawsker-deploy verify --config "$cfg"

say "the same deploy again is a no-op"
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v2" --frontend-dir "$demo/frontend-v2" --no-snapshot

say "releases on the target"
bin/lawsker-deploy releases --config "$cfg"

say "the database travels with the release: snapshot, a data change, a rollback of the data"
export PGPASSWORD="$SAMPLE_DB_PASSWORD"
psql -h 127.0.0.1 -p 15432 -U sample -d sample -qc "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text); TRUNCATE notes; INSERT INTO notes (body) VALUES ('kept by the snapshot')"
bin/lawsker-deploy snapshot create --config "$cfg" --description "demo: before a data change"
snap=$(bin/lawsker-deploy snapshot list --json --config "$cfg" | grep -o 'snap_[0-9_a-f]*' | head -n 1)
psql -h 127.0.0.1 -p 15432 -U sample -d sample -qc "INSERT INTO notes (body) VALUES ('written after the snapshot')"
echo "notes now: $(psql -h 127.0.0.1 -p 15432 -U sample -d sample -tAc 'SELECT count(*) FROM notes') rows"
bin/lawsker-deploy rollback --snapshot "$snap" --dry-run --config "$cfg"
bin/lawsker-deploy rollback --snapshot "$snap" --config "$cfg"
echo "notes after the rollback: $(psql -h 127.0.0.1 -p 15432 -U sample -d sample -tAc 'SELECT count(*) FROM notes') row(s): $(psql -h 127.0.0.1 -p 15432 -U sample -d sample -tAc "SELECT string_agg(body, ' / ') FROM notes")"
unset PGPASSWORD

say "switch back to the warm previous release"
bin/lawsker-deploy rollback --previous --config "$cfg"
echo "through nginx: backend $(page /api/v1/version), $(page / | grep -o '<h1>[^<]*</h1>')"

say "Lawsker's legacy deployment_config.json, read directly"
legacy=config/testdata/lawsker_deployment_config.json
DB_PASSWORD="${DB_PASSWORD:-demo-db-password}" bin/lawsker-deploy validate --config "$legacy"

say "config import: legacy -> $demo/deploy.json (secrets stay references)"
bin/lawsker-deploy config import --from "$legacy" --out "$demo/deploy.json" --force
grep -n '"password"' "$demo/deploy.json"

say "a broken configuration: every problem at once, exit code 2"
cat > "$demo/broken.json" <<'JSON'
{
  "version": 1,
  "app": "; rm -rf /",
  "targets": [{"name": "prod", "host": "app.example.com", "ssh": {"port": 70000, "prot": 22}}],
  "backend": {"image": "ghcr.io/acme/web", "secret_env": {"API_KEY": "sk_live_pasted_by_mistake"}}
}
JSON
set +e
bin/lawsker-deploy validate --config "$demo/broken.json"
code=$?
set -e
echo "exit code: $code"

say "reports and logs"
ls -1t reports/ | head -n 8
echo "latest deploy report: $(ls -1t reports/deploy_*.json | head -n 1)"
echo "the local target keeps running; stop it with: scripts/local-target.sh stop"
