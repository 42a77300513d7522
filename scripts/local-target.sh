#!/usr/bin/env bash
# The demo's local target on this machine, as examples/local.deploy.json
# describes it: sshd on 127.0.0.1:2222 accepting the demo key for root (host
# key recorded in .cache/demo/ssh/known_hosts; its sessions use this
# repository's Docker engine), an OCI registry on 127.0.0.1:5000, and an
# nginx under /var/tmp/lawsker-demo/nginx that includes the app's site file.
# Idempotent; keys and logs live under .cache/demo.
#
#   scripts/local-target.sh         start (or check) the local target
#   scripts/local-target.sh stop    stop it
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022 # the servers (postgres, nginx workers) read what this script creates, whatever the caller's umask
demo=$PWD/.cache/demo
ssh_port=2222
registry_addr=127.0.0.1:5000
log() { printf 'local-target: %s\n' "$*" >&2; }

stop_pid() { [ -f "$1" ] && kill "$(head -n 1 "$1")" 2>/dev/null || true; rm -f "$1"; }  # postmaster.pid has more lines
nginx_prefix=/var/tmp/lawsker-demo/nginx
pg_dir=/var/tmp/lawsker-demo/pg
redis_dir=/var/tmp/lawsker-demo/redis
if [ "${1:-}" = "stop" ]; then
  stop_pid "$demo/sshd/sshd.pid"; stop_pid "$demo/registry/registry.pid"; stop_pid "$nginx_prefix/nginx.pid"
  stop_pid "$redis_dir/redis.pid"; stop_pid "$pg_dir/postmaster.pid"
  log "stopped"; exit 0
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

mkdir -p "$demo/ssh" "$demo/sshd" "$demo/registry"
[ -f "$demo/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C lawsker-demo -f "$demo/ssh/id_ed25519"
[ -f "$demo/sshd/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -C lawsker-demo-host -f "$demo/sshd/ssh_host_ed25519_key"
cp "$demo/ssh/id_ed25519.pub" "$demo/sshd/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$ssh_port" "$(cut -d' ' -f1,2 "$demo/sshd/ssh_host_ed25519_key.pub")" > "$demo/ssh/known_hosts"

if ! alive "$demo/sshd/sshd.pid"; then
  if port_open "$ssh_port"; then log "port $ssh_port is taken by another program; free it or change targets[0].ssh.port"; exit 1; fi
  cat > "$demo/sshd/sshd_config" <<CFG
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $demo/sshd/ssh_host_ed25519_key
PidFile $demo/sshd/sshd.pid
AuthorizedKeysFile $demo/sshd/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
SetEnv DOCKER_HOST=unix://$PWD/.cache/docker/docker.sock
CFG
  mkdir -p /run/sshd
  /usr/sbin/sshd -f "$demo/sshd/sshd_config" -E "$demo/sshd/sshd.log"
  log "sshd on 127.0.0.1:$ssh_port"
fi

if ! alive "$demo/registry/registry.pid"; then
  if port_open 5000; then log "port 5000 is taken by another program; free it or change registry.host"; exit 1; fi
  cat > "$demo/registry/config.yml" <<CFG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $demo/registry/data
  delete:
    enabled: true
http:
  addr: $registry_addr
CFG
  setsid .cache/bin/registry serve "$demo/registry/config.yml" > "$demo/registry/registry.log" 2>&1 < /dev/null &
  echo $! > "$demo/registry/registry.pid"
  log "registry on $registry_addr"
fi

if ! alive "$nginx_prefix/nginx.pid"; then
  mkdir -p "$nginx_prefix/sites" "$nginx_prefix/tmp" "$nginx_prefix/logs"
  cat > "$nginx_prefix/nginx.conf" <<CFG
worker_processes 1;
pid $nginx_prefix/nginx.pid;
error_log $nginx_prefix/logs/error.log warn;
events { worker_connections 512; }
http {
  access_log $nginx_prefix/logs/access.log;
  client_body_temp_path $nginx_prefix/tmp/body;
  proxy_temp_path $nginx_prefix/tmp/proxy;
  fastcgi_temp_path $nginx_prefix/tmp/fastcgi;
  uwsgi_temp_path $nginx_prefix/tmp/uwsgi;
  scgi_temp_path $nginx_prefix/tmp/scgi;
  types { text/html html; application/javascript js; text/css css; application/json json; }
  default_type application/octet-stream;
  include $nginx_prefix/sites/*.conf;
}
CFG
  nginx -p "$nginx_prefix" -c "$nginx_prefix/nginx.conf"
  log "nginx (prefix $nginx_prefix; the app's site arrives with the first deploy)"
fi

# PostgreSQL on 127.0.0.1:15432 (database and superuser "sample", password
# SAMPLE_DB_PASSWORD from the demo's env file) and Redis on 127.0.0.1:16379.
if [ -f "$demo/env" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if ! port_open 15432; then
    if [ ! -f "$pg_dir/PG_VERSION" ]; then
      mkdir -p "$pg_dir" && chown postgres "$pg_dir" && chmod 700 "$pg_dir"
      pw=$(grep '^SAMPLE_DB_PASSWORD=' "$demo/env" | cut -d= -f2-)
      printf '%s\n' "$pw" > "$pg_dir.pw" && chown postgres "$pg_dir.pw"
      runuser -u postgres -- "$pgbin/initdb" -D "$pg_dir" -U sample --pwfile "$pg_dir.pw" -A scram-sha-256 --no-sync >/dev/null
      rm -f "$pg_dir.pw"
    fi
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$pg_dir" -l "$pg_dir/server.log" -w \
      -o "-p 15432 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$pg_dir" start >/dev/null
    PGPASSWORD=$(grep '^SAMPLE_DB_PASSWORD=' "$demo/env" | cut -d= -f2-) \
      psql -h 127.0.0.1 -p 15432 -U sample -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'sample'" | grep -q 1 ||
      PGPASSWORD=$(grep '^SAMPLE_DB_PASSWORD=' "$demo/env" | cut -d= -f2-) psql -h 127.0.0.1 -p 15432 -U sample -d postgres -qc "CREATE DATABASE sample"
    log "PostgreSQL on 127.0.0.1:15432"
  fi
  if ! port_open 16379; then
    mkdir -p "$redis_dir"
    redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" --dir "$redis_dir"
    log "Redis on 127.0.0.1:16379"
  fi
fi

for _ in $(seq 1 50); do port_open "$ssh_port" && port_open 5000 && break; sleep 0.2; done
port_open "$ssh_port" || { log "sshd did not start:"; tail -n 20 "$demo/sshd/sshd.log" >&2; exit 1; }
port_open 5000 || { log "registry did not start:"; tail -n 20 "$demo/registry/registry.log" >&2; exit 1; }
alive "$nginx_prefix/nginx.pid" || { log "nginx did not start:"; tail -n 20 "$nginx_prefix/logs/error.log" >&2; exit 1; }
log "ready: ssh root@127.0.0.1:$ssh_port (key $demo/ssh/id_ed25519), registry $registry_addr, nginx $nginx_prefix"
