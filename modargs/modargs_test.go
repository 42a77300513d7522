package modargs

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/testenv"
)

func local(t *testing.T) *config.Config {
	t.Helper()
	l, err := config.LoadFile("../examples/local.deploy.json", config.ImportOptions{})
	require.NoError(t, err)
	return l.Config
}

func TestSecretsFeedTheReferencesTheyStandFor(t *testing.T) {
	cfg := local(t)
	var masked []string
	res, err := Resolver(cfg, []Secret{
		{URI: "env://SAMPLE_DB_PASSWORD", Value: "db-password-value"},
		{URI: "file:///home/dev/lawsker/.cache/demo/ssh/id_ed25519", Value: "ssh-key-material"},
	}, func(v string) { masked = append(masked, v) })
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"db-password-value", "ssh-key-material"}, masked, "every value is masked before use")
	v, err := res.Resolve("file:.cache/demo/ssh/id_ed25519")
	require.NoError(t, err)
	assert.Equal(t, "ssh-key-material", v)
	// Not passed: the message names the --secrets form, and nothing is read
	// from this process's environment.
	t.Setenv("SAMPLE_SESSION_KEY", "set-on-the-engine-side")
	_, err = res.Resolve("env:SAMPLE_SESSION_KEY")
	assert.EqualError(t, err, "env:SAMPLE_SESSION_KEY was not passed to the engine: add --secrets=env://SAMPLE_SESSION_KEY (a Dagger function reads none of your environment variables or files by itself): secret not available")
}

func TestASecretThatStandsForNoReferenceIsRefused(t *testing.T) {
	cfg := local(t)
	_, err := Resolver(cfg, []Secret{
		{URI: "env://SAMPLE_DB_PASSWORD", Value: "db-password-value"},
		{URI: "file:///home/dev/.ssh/id_ed25519", Value: "ssh-key-material"},
	}, nil)
	require.Error(t, err)
	assert.Equal(t, "--secrets[1] file:///home/dev/.ssh/id_ed25519 stands for no secret reference of the configuration; its references and the form that passes each: "+
		"env:SAMPLE_DB_PASSWORD (database.password): --secrets=env://SAMPLE_DB_PASSWORD; "+
		"env:SAMPLE_LOGIN_PASSWORD (backend.secret_env.SAMPLE_LOGIN_PASSWORD): --secrets=env://SAMPLE_LOGIN_PASSWORD; "+
		"env:SAMPLE_SESSION_KEY (backend.secret_env.SESSION_KEY): --secrets=env://SAMPLE_SESSION_KEY; "+
		"file:.cache/demo/ssh/id_ed25519 (targets[0].ssh.key): --secrets=file://.cache/demo/ssh/id_ed25519", err.Error())
	assert.NotContains(t, err.Error(), "ssh-key-material")

	_, err = Resolver(cfg, []Secret{{URI: "cmd://pass show db", Value: "x-secret-value"}}, nil)
	assert.EqualError(t, err, "--secrets[0]: secret from cmd:// cannot stand for a reference in the configuration: pass it as env://NAME or file://PATH (and reference env:NAME or file:PATH)")
}

func TestTargetServicesAreOnePerTarget(t *testing.T) {
	cfg := local(t)
	require.NoError(t, CheckTargetServices(cfg, 0))
	require.NoError(t, CheckTargetServices(cfg, 1))
	assert.EqualError(t, CheckTargetServices(cfg, 2), "--target-ssh: 2 service(s) given for 1 target(s): pass one per target, in the order of targets[] (targets[0] local (127.0.0.1:2222)), or none to dial every target from the engine")
	Reach(cfg, []string{"abc123.dagger.local:2222"})
	assert.Equal(t, "abc123.dagger.local:2222", cfg.Targets[0].SSH.Via)
}

func TestARegistryServiceStandsOnlyForALoopbackRegistry(t *testing.T) {
	cfg := local(t)
	require.NoError(t, CheckRegistryService(cfg))
	cfg.Backend.Image = "ghcr.io/acme/web"
	assert.EqualError(t, CheckRegistryService(cfg), "--registry: a service and a registry host are both given: backend.image names the registry ghcr.io, which the engine reaches by name; --registry stands only for a registry on your machine's loopback (127.0.0.1:5000): drop it")
	cfg.Backend.Image = "localhost:5000/web"
	require.NoError(t, CheckRegistryService(cfg))
}

func TestAFileStoreIsRefusedInsideAFunction(t *testing.T) {
	cfg := local(t)
	require.NoError(t, CheckStore(cfg), "target is kept on the target")
	cfg.Snapshots.Store = "file:///var/tmp/snapshots"
	assert.EqualError(t, CheckStore(cfg), `snapshots.store: file:///var/tmp/snapshots would be a folder of the Dagger function's container, which is thrown away when the call ends (with every snapshot in it): use "target" (a folder on the first target, over SFTP) or an object store (s3://bucket?region=..., gs://, azblob://); the static binary (lawsker-deploy) can keep file:// stores`)
	cfg.Snapshots.Store = "s3://snapshots?region=us-east-1"
	require.NoError(t, CheckStore(cfg))
}

func TestProbeSSHTellsAnSSHServerFromNothingAndFromAnythingElse(t *testing.T) {
	ctx := t.Context()
	s := testenv.StartSSHD(t)
	require.NoError(t, ProbeSSH(ctx, "targets[0] local", fmt.Sprintf("127.0.0.1:%d", s.Port), 5*time.Second))

	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	err := ProbeSSH(ctx, "targets[0] local", closed, 5*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "targets[0] local does not answer at "+closed)
	assert.Contains(t, err.Error(), "connection refused")

	// An HTTP server answers nothing until asked: not an SSH server.
	n := testenv.StartNginx(t, "")
	err = ProbeSSH(ctx, "targets[0] local", fmt.Sprintf("127.0.0.1:%d", n.Port), 2*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "closed or said nothing within 2s")

	// A server that talks, but not SSH.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(strings.Repeat("220 smtp.example ESMTP\r\n", 3)))
			c.Close()
		}
	}()
	err = ProbeSSH(context.Background(), "targets[0] local", l.Addr().String(), 2*time.Second)
	assert.EqualError(t, err, "targets[0] local at "+l.Addr().String()+" is not an SSH server (it did not send an SSH version line)")
}

func TestALoopbackTargetNeedsItsService(t *testing.T) {
	cfg := local(t)
	assert.EqualError(t, CheckLoopbackTargets(cfg, 0), "targets[0] local is at 127.0.0.1, your machine's loopback, which a Dagger function cannot reach (127.0.0.1 in a function is its own container): pass --target-ssh=tcp://localhost:2222 to the module")
	require.NoError(t, CheckLoopbackTargets(cfg, 1))
	cfg.Targets[0].Host = "app.example.com"
	require.NoError(t, CheckLoopbackTargets(cfg, 0))
}
