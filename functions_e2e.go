package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	cfgpkg "github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
	"github.com/lawsker/lawsker-deploy/modargs"
	"github.com/lawsker/lawsker-deploy/redact"
	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/snapshots"
)

// e2eBase is the image the end-to-end check's target is made from.
const e2eBase = "debian:bookworm"

// e2eTarget starts what a target host runs (PostgreSQL, Docker, nginx),
// then sshd in the foreground: the service is up when port 22 answers.
const e2eTarget = `#!/bin/bash
set -euo pipefail
pg_ctlcluster 15 main start
runuser -u postgres -- psql -qc "CREATE ROLE sample LOGIN SUPERUSER PASSWORD '$E2E_DB_PASSWORD'"
runuser -u postgres -- createdb -O sample sample
mkdir -p /etc/docker
echo '{"insecure-registries": ["registry:5000"], "storage-driver": "vfs"}' > /etc/docker/daemon.json
dockerd --bridge=none --iptables=false --ip6tables=false > /var/log/dockerd.log 2>&1 &
for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
docker info >/dev/null || { tail -n 30 /var/log/dockerd.log; exit 1; }
rm -f /etc/nginx/sites-enabled/default
nginx
mkdir -p /run/sshd /root/.ssh
install -m 600 /etc/e2e/user.pub /root/.ssh/authorized_keys
install -m 600 /etc/e2e/host /etc/ssh/ssh_host_ed25519_key
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password
`

// e2eConfig is the target's deploy.json: the target is named 127.0.0.1
// (its own loopback, where its nginx and PostgreSQL listen), reached only
// through its service.
const e2eConfig = `{"version": 1, "app": "sample", "environment": "e2e",
  "targets": [{"name": "target", "host": "127.0.0.1",
    "ssh": {"user": "root", "port": 22, "key": "env:E2E_SSH_KEY", "known_hosts": "/nonexistent"},
    "root": "/srv", "nginx": {"site_path": "/etc/nginx/sites-enabled/sample.conf", "listen": 80}}],
  "backend": {"image": "registry:5000/sample/backend", "network": "host", "port_env": "PORT", "health_path": "/api/v1/health",
    "migrate_command": ["/app/backend", "migrate"], "health_gate": {"interval": "500ms", "deadline": "60s", "consecutive_passes": 2}},
  "database": {"host": "127.0.0.1", "port": 5432, "name": "sample", "user": "sample", "password": "env:E2E_DB_PASSWORD",
    "sslmode": "disable", "url_env": "SAMPLE_DATABASE_URL", "admin_user": "sample", "admin_password": "env:E2E_DB_PASSWORD"},
  "snapshots": {"store": "target"},
  "verification": {"categories": ["health"]},
  "rollback": {"watch_window": "3s"}}`

// EndToEnd deploys the sample app to a throwaway target run as Dagger services, rolls it back both ways, and checks what serves.
//
// The target is a Debian container (OpenSSH, nginx, Docker and PostgreSQL
// from Debian's packages) started as a service beside a registry service,
// and reached only through its service, as --target-ssh reaches yours.
// The sample backend is built from its Dockerfile (v1, v2), loaded on the
// target and pushed to the registry; then deploy v1, deploy v2 (each with
// its pre- and post-deploy snapshots in the target store), rollback
// --previous (v1 serves), and rollback --snapshot to v1's post-deploy
// snapshot with its database (v2's migration undone). The target's Docker
// engine needs InsecureRootCapabilities.
// +check
func (m *LawskerDeploy) EndToEnd(
	ctx context.Context,
	// The module's source (the sample app is built from it).
	// +defaultPath="/"
	// +ignore=[".git", "**/node_modules", ".cache", "reports", "logs", "bin"]
	source *dagger.Directory,
) error {
	var b [18]byte
	_, _ = rand.Read(b[:])
	dbPassword := hex.EncodeToString(b[:])
	debian := dag.Container().From(e2eBase).WithEnvVariable("DEBIAN_FRONTEND", "noninteractive")
	keys := debian.
		WithExec([]string{"sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-client >/dev/null"}).
		WithExec([]string{"sh", "-c", "mkdir /k && ssh-keygen -q -t ed25519 -N '' -C e2e-user -f /k/user && ssh-keygen -q -t ed25519 -N '' -C e2e-host -f /k/host"}).
		Directory("/k")
	userKey, err := keys.File("user").Contents(ctx)
	if err != nil {
		return fmt.Errorf("end-to-end: keys: %w", err)
	}
	hostPub, err := keys.File("host.pub").Contents(ctx)
	if err != nil {
		return fmt.Errorf("end-to-end: keys: %w", err)
	}
	registry := dag.Container().From("registry:3").WithExposedPort(5000).AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
	target := debian.
		WithExec([]string{"sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server nginx-light docker.io postgresql ca-certificates >/dev/null"}).
		WithDirectory("/etc/e2e", keys).
		WithNewFile("/usr/local/bin/e2e-target", e2eTarget, dagger.ContainerWithNewFileOpts{Permissions: 0o755}).
		WithSecretVariable("E2E_DB_PASSWORD", dag.SetSecret("lawsker-e2e-db-password", dbPassword)).
		WithServiceBinding("registry", registry).
		WithExposedPort(22).
		AsService(dagger.ContainerAsServiceOpts{Args: []string{"/usr/local/bin/e2e-target"}, InsecureRootCapabilities: true})

	// The run environment a `dagger call --target-ssh=... ` gets.
	l, err := cfgpkg.Parse([]byte(e2eConfig), cfgpkg.ImportOptions{})
	if err != nil {
		return fmt.Errorf("end-to-end: %w", err)
	}
	red := redact.New()
	res, err := modargs.Resolver(l.Config, []modargs.Secret{{URI: "env://E2E_SSH_KEY", Value: userKey}, {URI: "env://E2E_DB_PASSWORD", Value: dbPassword}}, func(v string) { red.Add(v) })
	if err != nil {
		return fmt.Errorf("end-to-end: %w", err)
	}
	dir, err := os.MkdirTemp("", "lawsker-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("[127.0.0.1]:22 "+strings.TrimSpace(hostPub)+"\n"), 0o600); err != nil {
		return err
	}
	l.Config.Targets[0].SSH.KnownHosts = kh
	e2e := &LawskerDeploy{TargetSSH: []*dagger.Service{target}}
	if err := e2e.reach(ctx, l.Config); err != nil {
		return fmt.Errorf("end-to-end: %w", err)
	}
	env := &runEnv{cfg: l.Config, red: red, res: res, cleanup: func() {}}
	ep, err := deploy.Endpoint(env.cfg.Primary(), res)
	if err != nil {
		return err
	}
	h, err := remote.Connect(ctx, ep, 3)
	if err != nil {
		return fmt.Errorf("end-to-end: the target service: %w", err)
	}
	defer h.Close()

	var log strings.Builder
	step := func(what string, out string, err error) error {
		fmt.Fprintf(&log, "== %s\n%s\n", what, out)
		if err != nil {
			return flatten(fmt.Errorf("end-to-end: %s: %w\n%s", what, err, red.String(log.String())))
		}
		return nil
	}
	images := map[string]string{}
	for _, v := range []string{"v1", "v2"} {
		ref, err := e2eImage(ctx, h, dir, source, v)
		if err := step("build, load and push the sample backend "+v, ref, err); err != nil {
			return err
		}
		images[v] = ref
	}
	for _, v := range []string{"v1", "v2"} {
		out, err := m.deploy(ctx, env, deployArgs{backendImage: images[v], message: "end-to-end " + v})
		if err := step("deploy "+v, out, err); err != nil {
			return err
		}
		if err := step("serving after deploy "+v, "", e2eServes(ctx, h, v)); err != nil {
			return err
		}
	}
	out, err := rollback(ctx, env, rollbackArgs{previous: true, force: true})
	if err := step("rollback --previous --force", out, err); err != nil {
		return err
	}
	if err := step("serving after rollback --previous", "", e2eServes(ctx, h, "v1")); err != nil {
		return err
	}
	store, err := snapshots.OpenStore(ctx, env.cfg, res, h)
	if err != nil {
		return err
	}
	ms, _ := snapshots.List(ctx, store)
	v1Post := ""
	for _, s := range ms { // newest first: the last post-deploy one is v1's
		if s.Trigger == "post-deploy" {
			v1Post = s.ID
		}
	}
	if v1Post == "" {
		return step("snapshots", fmt.Sprintf("%d snapshots", len(ms)), errors.New("no post-deploy snapshot of v1 in the target store"))
	}
	out, err = rollback(ctx, env, rollbackArgs{snapshot: v1Post, components: "backend,database"})
	if err := step("rollback --snapshot "+v1Post+" --components=backend,database", out, err); err != nil {
		return err
	}
	if err := step("serving after rollback --snapshot", "", e2eServes(ctx, h, "v1")); err != nil {
		return err
	}
	tables, err := h.Run(ctx, "runuser", "-u", "postgres", "--", "psql", "-tAd", "sample", "-c", "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
	if err == nil && strings.Contains(tables, "release_v2") {
		err = fmt.Errorf("v2's migration is still in the database after the rollback to v1's snapshot: tables %s", strings.TrimSpace(tables))
	}
	return step("the database is v1's", strings.TrimSpace(tables), err)
}

// e2eImage builds the sample backend at version v from its Dockerfile,
// loads it into the target's Docker and pushes it to the registry
// service; returns it pinned by digest.
func e2eImage(ctx context.Context, h *remote.Host, dir string, source *dagger.Directory, v string) (string, error) {
	tarball := filepath.Join(dir, v+".tar")
	img := source.Directory("examples/sample/backend").DockerBuild(dagger.DirectoryDockerBuildOpts{BuildArgs: []dagger.BuildArg{{Name: "VERSION", Value: v}}})
	if _, err := img.AsTarball().Export(ctx, tarball); err != nil {
		return "", err
	}
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	loaded, err := h.RunInput(ctx, f, "docker", "load", "-q")
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(loaded[strings.LastIndex(loaded, ":")+1:])
	tag := "registry:5000/sample/backend:" + v
	if _, err := h.Run(ctx, "docker", "tag", "sha256:"+id, tag); err != nil {
		return "", err
	}
	if _, err := h.Run(ctx, "docker", "push", "-q", tag); err != nil {
		return "", err
	}
	ref, err := h.Run(ctx, "docker", "inspect", "--format", "{{index .RepoDigests 0}}", tag)
	return strings.TrimSpace(ref), err
}

// e2eServes checks that the target's nginx serves the backend version v
// (through the target's SSH connection, as the suite reaches it).
func e2eServes(ctx context.Context, h *remote.Host, v string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return h.DialTCP(ctx, addr) }}}
	resp, err := client.Get("http://127.0.0.1:80/api/v1/version")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if got := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusOK || got != v {
		return fmt.Errorf("nginx answered %d %q, want %q", resp.StatusCode, got, v)
	}
	return nil
}
