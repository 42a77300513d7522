#!/usr/bin/env bash
# The main job on the embedded default: a local target on this machine
# (examples/local.deploy.json). Today it does what the project can already
# do: install the servers (scripts/setup-testenv.sh), start the local target
# (sshd on 127.0.0.1:2222 and a registry on 127.0.0.1:5000), build the CLI,
# validate the configuration with every secret resolved, show the deployment
# plan, run the preflight checks against the local target, read Lawsker's
# legacy deployment_config.json and convert it, and show the reports.
# Deploying the sample app, verifying, snapshotting and rolling back join
# this script as those verbs land.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
demo=.cache/demo
mkdir -p "$demo/ssh" bin

say "install the servers and start the local target"
scripts/setup-testenv.sh
scripts/local-target.sh

say "build bin/lawsker-deploy"
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" \
  -o bin/lawsker-deploy ./cmd/lawsker-deploy
bin/lawsker-deploy version

say "demo secrets (generated once, kept in $demo, never printed)"
[ -f "$demo/env" ] || {
  umask 077
  printf 'SAMPLE_DB_PASSWORD=%s\nSAMPLE_SESSION_KEY=%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" > "$demo/env"
}
set -a; . "$demo/env"; set +a
echo "secrets ready: ssh key $demo/ssh/id_ed25519, SAMPLE_DB_PASSWORD, SAMPLE_SESSION_KEY"

say "validate examples/local.deploy.json (every secret must resolve)"
bin/lawsker-deploy validate --require-secrets --config examples/local.deploy.json

say "plan: the DAG deploy runs for this configuration"
bin/lawsker-deploy plan --config examples/local.deploy.json

say "preflight: can this machine reach what deploy needs? (a pipeline run: live progress, log, report)"
bin/lawsker-deploy preflight --config examples/local.deploy.json

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
ls -1t reports/ | head -n 6
echo "latest plan report: $(ls -1t reports/plan_*.json | head -n 1)"
