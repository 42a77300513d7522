#!/usr/bin/env bash
# The main job on the embedded default: a local target on this machine
# (examples/local.deploy.json). It installs the servers
# (scripts/setup-testenv.sh), starts the local target (scripts/local-target.sh:
# sshd on 127.0.0.1:2222, a registry on 127.0.0.1:5000, nginx on
# 127.0.0.1:28080), builds the CLI and the sample app's images, validates the
# configuration, shows the plan, runs preflight, deploys v1 then v2 with zero
# downtime, reads logs from the log store on the target (and shows the
# fallback when it is down) (each deploy: a pre-deploy snapshot, migrations,
# the verification suite and a watch window, a post-deploy snapshot),
# verifies, deploys a v3
# that fails after the switch and rolls itself back with its database,
# is refused a switch back to the warm previous release (v1: the schema is
# v2's), rolls back to v1's
# snapshot with its database, and shows the reports.
# It also reads Lawsker's legacy deployment_config.json and shows what a
# broken configuration gets.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
demo=.cache/demo
cfg=examples/local.deploy.json
mkdir -p "$demo/ssh" bin

say "demo secrets (generated once, kept in $demo, never printed)"
[ -f "$demo/env" ] || (
  umask 077 # the file only; a subshell, so what the script creates later stays readable to the servers
  rnd() { head -c "$1" /dev/urandom | base64 | tr -d '/+='; }
  printf 'SAMPLE_DB_PASSWORD=%s\nSAMPLE_SESSION_KEY=%s\nSAMPLE_LOGIN_PASSWORD=%s\n' "$(rnd 18)" "$(rnd 24)" "$(rnd 18)" > "$demo/env"
)
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

say "the sample app: backend images v1, v2 and a broken v3 (a static Go binary in a one-layer image), two frontends"
image() { # version [ldflags] -> repo@sha256 digest, pushed to the local registry
  local v=$1 work="$demo/image-$1"
  rm -rf "$work" && mkdir -p "$work/root/app" "$work/root/tmp"
  CGO_ENABLED=0 go build -C examples/sample/backend -trimpath -ldflags "-X main.version=$v ${2:-}" -o "$PWD/$work/root/app/backend" .
  tar -C "$work/root" -cf "$work/layer.tar" app tmp
  docker import --change 'CMD ["/app/backend"]' "$work/layer.tar" "127.0.0.1:5000/sample/backend:$v" >/dev/null
  docker push --quiet "127.0.0.1:5000/sample/backend:$v" >/dev/null
  docker inspect --format '{{index .RepoDigests 0}}' "127.0.0.1:5000/sample/backend:$v"
}
v1=$(image v1); v2=$(image v2)

say "monitoring images for the local target (nothing is pulled here): Prometheus from Debian's binary, VictoriaLogs (the log store) from the binary setup-testenv built"
monimage() { # ref entrypoint src:dst... -> pushed to the local registry
  local ref=$1 entry=$2 work="$demo/mon-image"; shift 2
  rm -rf "$work" && mkdir -p "$work/root/tmp"
  for pair in "$@"; do mkdir -p "$work/root/$(dirname "${pair#*:}")"; cp -L "${pair%%:*}" "$work/root/${pair#*:}"; done
  tar -C "$work/root" -cf "$work/layer.tar" .
  docker import --change "ENTRYPOINT [\"$entry\"]" "$work/layer.tar" "$ref" >/dev/null
  docker push --quiet "$ref" >/dev/null
  echo "$ref"
}
monimage 127.0.0.1:5000/mon/prometheus:demo /bin/prometheus "$(command -v prometheus):bin/prometheus" \
  /lib/x86_64-linux-gnu/libc.so.6:lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2:lib64/ld-linux-x86-64.so.2
monimage 127.0.0.1:5000/mon/victoria-logs:v1.52.1 /app/victoria-logs .cache/bin/victoria-logs:app/victoria-logs
# v3's health fails after its 20th answer: it passes the health gate and the
# switch, then the verification suite and the watch window see it fail.
v3=$(image v3 "-X main.healthyAnswers=20")
echo "v1: $v1"; echo "v2: $v2"; echo "v3: $v3 (turns unhealthy after the switch)"
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

sql() { PGPASSWORD="$SAMPLE_DB_PASSWORD" psql -h 127.0.0.1 -p 15432 -U sample -d sample -tAc "$1"; }
# Every run starts from an empty app on the local target: no releases, no
# snapshots, no tables (a previous run's containers may be gone, e.g. after
# a reboot, while its state remains).
docker rm -f $(docker ps -aq --filter label=lawsker.base=/var/tmp/lawsker-demo/srv/sample) >/dev/null 2>&1 || true
rm -rf /var/tmp/lawsker-demo/srv/sample /var/tmp/lawsker-demo/snapshots /var/tmp/lawsker-demo/nginx/sites/sample.conf
nginx -p /var/tmp/lawsker-demo/nginx -c /var/tmp/lawsker-demo/nginx/nginx.conf -s reload
sql "DROP TABLE IF EXISTS alembic_version, release_v1, release_v2, release_v3, notes" >/dev/null

say "deploy v1: pre-deploy snapshot, migrations, verification suite, watch window, post-deploy snapshot"
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v1" --frontend-dir examples/sample/frontend/dist --message "first release"
echo "through nginx: backend $(page /api/v1/version), $(page / | grep -o '<h1>[^<]*</h1>'); migration version $(sql 'SELECT version_num FROM alembic_version')"
snap_v1=$(ls -1t reports/deploy_*.json | head -n 1 | xargs grep -o '"post_snapshot": "snap_[0-9_a-f]*"' | grep -o 'snap_[0-9_a-f]*')
echo "v1's post-deploy snapshot: $snap_v1"

say "data written while v1 serves (the snapshot does not have it)"
sql "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('written after v1''s snapshot')" >/dev/null
echo "notes: $(sql 'SELECT count(*) FROM notes') row(s)"

say "deploy v2 while a client polls through nginx (every failed request is counted)"
stop=$(mktemp); ok=0; failed=0
( while [ ! -s "$stop" ]; do
    if curl -sf --max-time 2 -o /dev/null http://127.0.0.1:28080/api/v1/health; then echo ok; else echo failed; fi
  done > "$demo/poll.log" ) &
poller=$!
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v2" --frontend-dir "$demo/frontend-v2" --message "second release"
echo stop > "$stop"; wait "$poller"; rm -f "$stop"
ok=$(grep -c '^ok' "$demo/poll.log" || true); failed=$(grep -c '^failed' "$demo/poll.log" || true)
echo "through nginx: backend $(page /api/v1/version), $(page / | grep -o '<h1>[^<]*</h1>'); migration version $(sql 'SELECT version_num FROM alembic_version')"
echo "requests during the deploy: $ok ok, $failed failed"

say "verify: the whole suite against the deployment (table, JSON report, JUnit, Markdown)"
bin/lawsker-deploy verify --config "$cfg"

say "logs from the log store on the target (VictoriaLogs, fed by Docker's syslog driver and nginx): v2's output (every secret masked), v1's, still warm, nginx's access lines as JSON"
bin/lawsker-deploy logs --config "$cfg" --since 10m --lines 5
bin/lawsker-deploy logs --config "$cfg" --release previous --lines 3
bin/lawsker-deploy logs --config "$cfg" --source access --grep /api/v1/health --lines 2
bin/lawsker-deploy logs --config "$cfg" --source access --lines 1 --json

say "the log store goes down: logs falls back to docker logs and says so; monitoring apply starts it again"
store=$(docker ps --filter label=lawsker.role=logs --filter label=lawsker.base=/var/tmp/lawsker-demo/srv/sample --format '{{.Names}}')
docker stop "$store" >/dev/null
bin/lawsker-deploy logs --config "$cfg" --lines 2
bin/lawsker-deploy monitoring apply --config "$cfg"
echo

say "verify any URL with no configuration, as the old toolkit's deploy.py --action verify --base-url did (the old form is mapped)"
# In an empty folder: no deploy.json there (a later step writes one into $demo).
noconf=$(mktemp -d)
(cd "$noconf" && "$OLDPWD/bin/lawsker-deploy" --action verify --base-url "http://127.0.0.1:28080" --category health,security \
  --reports-dir "$OLDPWD/reports" --logs-dir "$OLDPWD/logs") || echo "(a failed check exits 1; the demo goes on)"
rmdir "$noconf"

say "every verb explains itself: rollback --help"
bin/lawsker-deploy rollback --help

say "the same deploy again is a no-op"
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v2" --frontend-dir "$demo/frontend-v2"

say "deploy v3: it migrates, passes the health gate, then fails after the switch: automatic rollback, database included; its error lines come from the log store"
set +e
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v3" --frontend-dir "$demo/frontend-v2" --message "third release (broken)"
code=$?
set -e
echo "exit code: $code; through nginx: backend $(page /api/v1/version); migration version $(sql 'SELECT version_num FROM alembic_version'); release_v3 table: $(sql "SELECT coalesce(to_regclass('release_v3')::text, 'gone')")"

say "deploy v1 again and kill -9 it after the switch, inside its verification: the target switches back by itself"
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v1" --frontend-dir examples/sample/frontend/dist --message "killed in its verification" \
  > "$demo/killed.out" 2> "$demo/killed.err" &
killed=$!
for _ in $(seq 600); do grep -q '\[verify-release\] started' "$demo/killed.err" 2>/dev/null && break; sleep 0.1; done
sleep 1
echo "through nginx while the new release is being verified: backend $(page /api/v1/version)"
kill -9 "$killed"; wait "$killed" 2>/dev/null || true
sleep 0.5
echo "after kill -9: through nginx: backend $(page /api/v1/version) (the dead man's switch on the target put the previous release back)"
set +e
bin/lawsker-deploy lock status --config "$cfg"
echo "lock status exit code: $?"
set -e
bin/lawsker-deploy lock release --force --config "$cfg"
echo "the next deploy converges what the killed one left (its undo journal, replayed), then has nothing to do:"
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v2" --frontend-dir "$demo/frontend-v2"

say "releases on the target, snapshots in the store"
bin/lawsker-deploy releases --config "$cfg"
bin/lawsker-deploy snapshot list --config "$cfg"

say "switch back to the warm previous release? refused: the database has v2's schema, which v1 never ran on (the error names the snapshot to use)"
set +e
bin/lawsker-deploy rollback --previous --config "$cfg"
echo "exit code: $?; through nginx: backend $(page /api/v1/version) (unchanged)"
set -e

say "roll back to v1's snapshot: the plan, then the release and its database"
bin/lawsker-deploy rollback --snapshot "$snap_v1" --dry-run --config "$cfg"
bin/lawsker-deploy rollback --snapshot "$snap_v1" --config "$cfg"
echo "through nginx: backend $(page /api/v1/version), $(page / | grep -o '<h1>[^<]*</h1>'); migration version $(sql 'SELECT version_num FROM alembic_version'); notes: $(sql "SELECT coalesce(to_regclass('notes')::text, 'gone (written after the snapshot)')")"

say "maintenance mode: nginx answers 503 with Retry-After and the page, the health path still the release's; a deploy is refused until it is off"
bin/lawsker-deploy maintenance on --config "$cfg" --message "Database upgrade, back at 14:00"
sleep 0.3
curl -s -o /dev/null -w "GET / -> %{http_code}, Retry-After: " http://127.0.0.1:28080/ && curl -sI http://127.0.0.1:28080/ | grep -i '^retry-after' | tr -d '\r' | cut -d' ' -f2
curl -s http://127.0.0.1:28080/api/v1/cases | grep -o 'Database upgrade[^<]*'
echo "GET /api/v1/health -> $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:28080/api/v1/health) (the release's)"
bin/lawsker-deploy maintenance status --config "$cfg"
set +e
bin/lawsker-deploy deploy --config "$cfg" --backend-image "$v2" --frontend-dir "$demo/frontend-v2" >/dev/null 2>"$demo/refused.err"
echo "deploy while in maintenance: exit code $?: $(grep -o 'maintenance mode is on[^:]*' "$demo/refused.err" | head -n 1)"
set -e
bin/lawsker-deploy maintenance off --config "$cfg"
echo "through nginx: backend $(page /api/v1/version)"

say "a canary on plain nginx: v2 to 20% of the clients (sticky cookie), both releases measured from nginx's access log, held (--canary-hold), then promoted"
canary="$demo/canary.deploy.json"
sed 's/"rollback": {/"rollout": { "canary": { "weight": 20, "duration": "8s", "min_requests": 20 } },\n  "rollback": {/' "$cfg" > "$canary"
stop=$(mktemp)
( while [ ! -s "$stop" ]; do curl -s -o /dev/null --max-time 2 http://127.0.0.1:28080/api/v1/version; sleep 0.02; done ) &
poller=$!
bin/lawsker-deploy deploy --config "$canary" --backend-image "$v2" --frontend-dir "$demo/frontend-v2" --message "canary" --canary-hold
echo stop > "$stop"; wait "$poller"; rm -f "$stop"
for _ in $(seq 20); do curl -s -D - -o /dev/null http://127.0.0.1:28080/api/v1/version | grep -i '^x-lawsker-release' | tr -d '\r'; done | sort | uniq -c
bin/lawsker-deploy promote --config "$canary"
echo "through nginx: backend $(page /api/v1/version)"

say "a fleet: three web hosts in batches of one and a worker (examples/fleet.deploy.json), as plan draws it"
bin/lawsker-deploy plan --config examples/fleet.deploy.json | grep -E '^(Deploy plan|  (start|switch|batch|start-worker|switch-worker|migrate))'

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
echo "latest rollback report: $(ls -1t reports/rollback_*.json | head -n 1)"
echo "the local target keeps running; stop it with: scripts/local-target.sh stop"
