package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

type result struct {
	code           int
	stdout, stderr string
	dir            string
}

// runCLI runs the CLI in a temporary folder with the given environment.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	return runIn(t, dir, env, args...)
}

func runIn(t *testing.T, dir string, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	full := append([]string{"--reports-dir", filepath.Join(dir, "reports"), "--logs-dir", filepath.Join(dir, "logs")}, args...)
	code := c.run(t.Context(), full)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String(), dir: dir}
}

func abs(t *testing.T, rel string) string {
	p, err := filepath.Abs(rel)
	require.NoError(t, err)
	return p
}

// allOutput is everything the run left: stdout, stderr, reports, logs.
func allOutput(t *testing.T, r result) string {
	var b strings.Builder
	b.WriteString(r.stdout + r.stderr)
	for _, sub := range []string{"reports", "logs"} {
		entries, _ := os.ReadDir(filepath.Join(r.dir, sub))
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(r.dir, sub, e.Name()))
			require.NoError(t, err)
			b.Write(data)
		}
	}
	return b.String()
}

func TestValidateExample(t *testing.T) {
	r := runCLI(t, map[string]string{"SAMPLE_DB_PASSWORD": "sample-db-pw"}, "validate", "--config", abs(t, "../../examples/local.deploy.json"))
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "valid (native format)")
	assert.Contains(t, r.stdout, "sample (local)")
	assert.Contains(t, r.stdout, "backend.secret_env.SESSION_KEY <- env:SAMPLE_SESSION_KEY (MISSING: ")
	assert.Contains(t, r.stdout, "database.password <- env:SAMPLE_DB_PASSWORD (available)")
	assert.Contains(t, r.stdout, "report: "+filepath.Join(r.dir, "reports", "validate_"))

	strict := runCLI(t, nil, "validate", "--require-secrets", "--config", abs(t, "../../examples/local.deploy.json"))
	assert.Equal(t, exitUsage, strict.code)
	assert.Contains(t, strict.stderr, "database.password: env:SAMPLE_DB_PASSWORD: environment variable SAMPLE_DB_PASSWORD is not set")
}

func TestValidateBadFileExitsTwoWithEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "deploy.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"version": 1, "app": "web",
 "targets": [{"name": "prod", "host": "h.example.com", "ssh": {"port": 70000}}],
 "backend": {"image": "ghcr.io/a/b", "colour": 1}}`), 0o644))
	r := runIn(t, dir, nil, "validate", "--config", bad)
	assert.Equal(t, exitUsage, r.code)
	assert.Equal(t, "config: 2 problems:\n  targets[0].ssh.port: must be 1-65535, got 70000 (line 2)\n  backend.colour: unknown key; known keys: asgi_app, context, dockerfile, env, extra_ports, health_expect, health_gate, health_path, host_port_max, host_port_min, image, keep_releases, migrate_command, migrate_entrypoint, network, port, port_env, rollback_window, routes, secret_env, worker_command (line 3)\n", r.stderr)

	j := runIn(t, dir, nil, "validate", "--json", "--config", bad)
	assert.Equal(t, exitUsage, j.code)
	var out validateResult
	require.NoError(t, json.Unmarshal([]byte(j.stdout), &out))
	assert.False(t, out.Valid)
	assert.Len(t, out.Problems, 2)
	assert.Equal(t, "targets[0].ssh.port", out.Problems[0].Path)
	assert.Equal(t, 2, out.Problems[0].Line)
	assert.FileExists(t, out.Report)
}

func TestLegacyFileReadDirectlyAndSecretsNeverOutput(t *testing.T) {
	const secret = "Sup3r-s3cret-DB-pw"
	legacy := abs(t, "../../config/testdata/lawsker_deployment_config.json")
	env := map[string]string{"DB_PASSWORD": secret}
	for _, args := range [][]string{
		{"validate", "--config", legacy},
		{"validate", "--json", "--config", legacy},
		{"validate", "--verbose", "--config", legacy},
		{"plan", "--config", legacy},
		{"plan", "--json", "--config", legacy},
	} {
		r := runCLI(t, env, args...)
		require.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		all := allOutput(t, r)
		assert.NotContains(t, all, secret, "%v", args)
	}
	r := runCLI(t, env, "validate", "--config", legacy)
	assert.Contains(t, r.stdout, "valid (lawsker-legacy format)")
	assert.Contains(t, r.stdout, "database.password <- env:DB_PASSWORD (available)")
	assert.Contains(t, r.stdout, "postgresql lawsker_user@localhost:5432/lawsker_prod")
	assert.Contains(t, r.stdout, "note: targets[0].host: the legacy file names no host")
}

// A secret that does appear in a value the tool prints (a configuration
// mistake: the password pasted into a URL field) is masked everywhere once
// it is known as a secret.
func TestResolvedSecretIsMaskedEvenWhereItLeaksIntoValues(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deploy.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"version": 1, "app": "web",
 "targets": [{"name": "prod", "host": "h.example.com"}],
 "backend": {"image": "ghcr.io/a/b", "secret_env": {"TOKEN": "env:TOKEN"}, "health_path": "/leaked-tok3n-value"}}`), 0o644))
	r := runIn(t, dir, map[string]string{"TOKEN": "leaked-tok3n-value"}, "plan", "--json", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.NotContains(t, allOutput(t, r), "leaked-tok3n-value")
	assert.Contains(t, r.stdout, "GET /[REDACTED] until", "the leaked value was in the plan, masked")
	v := runIn(t, dir, map[string]string{"TOKEN": "leaked-tok3n-value"}, "validate", "--json", "--config", cfg)
	require.Equal(t, exitOK, v.code, v.stderr)
	assert.NotContains(t, allOutput(t, v), "leaked-tok3n-value")
}

func TestPlanText(t *testing.T) {
	r := runCLI(t, nil, "plan", "--config", abs(t, "../../examples/local.deploy.json"))
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Deploy plan for sample (local) to local: ")
	assert.Contains(t, r.stdout, "stage 3  (4 in parallel)\n  pull:local ")
	assert.Contains(t, r.stdout, "on failure: the previous release keeps serving")
	assert.Contains(t, r.stdout, "  snapshot-before ")
	data, err := os.ReadDir(filepath.Join(r.dir, "reports"))
	require.NoError(t, err)
	require.Len(t, data, 1)
	assert.True(t, strings.HasPrefix(data[0].Name(), "plan_"))
}

func TestConfigImport(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "deploy.json")
	legacy := abs(t, "../../config/testdata/lawsker_deployment_config.json")
	r := runIn(t, dir, map[string]string{"DB_PASSWORD": "never-written"}, "config", "import", "--from", legacy, "--out", out, "--host", "app.lawsker.com", "--image", "ghcr.io/lawsker/backend")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "database.password <- env:DB_PASSWORD")
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "never-written")
	assert.Contains(t, string(data), `"host": "app.lawsker.com"`)

	again := runIn(t, dir, nil, "config", "import", "--from", legacy, "--out", out)
	assert.Equal(t, exitUsage, again.code)
	assert.Contains(t, again.stderr, "exists; pass --force to overwrite it")

	v := runIn(t, dir, nil, "validate", "--config", out)
	assert.Equal(t, exitOK, v.code, v.stderr)
	assert.Contains(t, v.stdout, "valid (native format)")

	missing := runIn(t, dir, nil, "config", "import", "--from", filepath.Join(dir, "nope.json"))
	assert.Equal(t, exitUsage, missing.code)
	assert.Contains(t, missing.stderr, "pass --from with the path of deployment_config.json")
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"help"}, exitOK, "Exit codes:"},
		{[]string{"deploi"}, exitUsage, `unknown command "deploi"`},
		{[]string{"valid"}, exitUsage, `unknown command "valid"; did you mean "validate"?`},
		{[]string{"validate", "--nope"}, exitUsage, "validate: unknown flag --nope (lawsker-deploy validate --help lists them)"},
		{[]string{"deploy", "--no-snapshto"}, exitUsage, "deploy: unknown flag --no-snapshto; did you mean --no-snapshot?"},
		{[]string{"snapshot", "lst"}, exitUsage, `unknown snapshot subcommand "lst" (create, list, show, check, delete, prune); did you mean "list"?`},
		{[]string{"snapshot"}, exitUsage, "snapshot needs a subcommand: create, list, show, check, delete, prune"},
		{[]string{"--action", "frobnicate"}, exitUsage, `--action "frobnicate" is not one of the old toolkit's`},
		{[]string{"--action", "deploy", "--snapshot-id", "x"}, exitUsage, "--snapshot-id does not go with --action deploy"},
		{[]string{"validate", "extra"}, exitUsage, `validate: unexpected argument "extra"`},
		{[]string{"config"}, exitUsage, "config needs a subcommand: import, schema"},
		{[]string{"validate", "--config", "/does/not/exist.json"}, exitUsage, "pass --config with the path of your deploy.json"},
		{[]string{"version"}, exitOK, "lawsker-deploy dev"},
	}
	for _, tt := range tests {
		r := runCLI(t, nil, tt.args...)
		assert.Equal(t, tt.code, r.code, "%v", tt.args)
		assert.Contains(t, r.stdout+r.stderr, tt.want, "%v", tt.args)
	}
}

// Every command and subcommand explains itself: --help (and help X)
// prints its flags with their defaults and an example, exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	c := &cli{}
	var runErr error
	root := c.rootCommand(t.Context(), &runErr)
	var paths [][]string
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		for _, sub := range cmd.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			p := append(append([]string(nil), path...), sub.Name())
			paths = append(paths, p)
			walk(sub, p)
		}
	}
	walk(root, nil)
	require.Greater(t, len(paths), 20, "every verb and subverb")
	for _, p := range paths {
		for _, form := range [][]string{append(append([]string(nil), p...), "--help"), append([]string{"help"}, p...)} {
			r := runCLI(t, nil, form...)
			assert.Equal(t, exitOK, r.code, "%v: %s", form, r.stderr)
			assert.Contains(t, r.stdout, "lawsker-deploy "+strings.Join(p, " "), "%v", form)
			assert.Contains(t, r.stdout, "Global Flags:", "%v", form)
			if len(p) > 1 || !slices.Contains([]string{"snapshot", "lock", "tls", "monitoring", "config"}, p[0]) {
				assert.Contains(t, r.stdout, "Examples:", "%v has an example", form)
			}
		}
	}
	r := runCLI(t, nil, "rollback", "--help")
	assert.Contains(t, r.stdout, "--components string")
	assert.Contains(t, r.stdout, "--deployment string")
	r = runCLI(t, nil, "config", "import", "--help")
	assert.Regexp(t, `--from string +Lawsker's legacy configuration file \(default "deployment_config.json"\)`, r.stdout)
}

// bash and zsh completion: the scripts, and the completions they ask for
// (subcommands, a verb's own flags).
func TestShellCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh"} {
		r := runCLI(t, nil, "completion", sh)
		assert.Equal(t, exitOK, r.code, r.stderr)
		assert.Contains(t, r.stdout, "lawsker-deploy", sh)
	}
	r := runCLI(t, nil, "__complete", "snapshot", "")
	assert.Contains(t, r.stdout, "prune\tapply retention")
	r = runCLI(t, nil, "__complete", "deploy", "--fr")
	assert.Contains(t, r.stdout, "--frontend-dir\tfolder with the built frontend files")
	assert.NotContains(t, r.stdout, "--message")
}

// The old toolkit's command lines keep working: mapped to the native
// form, which is printed.
func TestLegacyActionsAreMapped(t *testing.T) {
	for _, tt := range []struct {
		in, want []string
	}{
		{[]string{"--action", "deploy", "--config", "x.json"}, []string{"deploy", "--config", "x.json"}},
		{[]string{"--action=verify", "--base-url", "http://localhost:8000"}, []string{"verify", "--base-url", "http://localhost:8000"}},
		{[]string{"--verbose", "--action", "rollback", "--snapshot-id", "snap_1"}, []string{"rollback", "--snapshot", "snap_1", "--verbose"}},
		{[]string{"--action", "rollback", "--deployment-id", "20261203_101500_ab12cd"}, []string{"rollback", "--deployment", "20261203_101500_ab12cd"}},
		{[]string{"--action", "rollback"}, []string{"rollback", "--previous"}},
		{[]string{"--action", "list-snapshots"}, []string{"snapshot", "list"}},
		{[]string{"--action", "create-snapshot", "--description", "before the migration"}, []string{"snapshot", "create", "--description", "before the migration"}},
		{[]string{"verify", "--base-url", "http://x"}, []string{"verify", "--base-url", "http://x"}},
	} {
		got, note, err := legacyArgs(tt.in)
		require.NoError(t, err, "%v", tt.in)
		assert.Equal(t, tt.want, got, "%v", tt.in)
		if slices.Contains(tt.in, "verify") && !strings.HasPrefix(tt.in[0], "--action") {
			assert.Empty(t, note)
		} else {
			assert.Contains(t, note, "is `lawsker-deploy "+strings.Join(tt.want, " ")+"`")
		}
	}
	r := runCLI(t, nil, "--action", "list-snapshots", "--config", "/does/not/exist.json")
	assert.Equal(t, exitUsage, r.code)
	assert.Regexp(t, "note: the old toolkit's --action list-snapshots is `lawsker-deploy snapshot list .*--config /does/not/exist.json`", r.stderr)
}

// verify --base-url with no configuration verifies any URL with the
// checks that need none, as the old toolkit's --action verify --base-url.
func TestVerifyAnyURLWithoutAConfiguration(t *testing.T) {
	ng := testenv.StartNginx(t, `  server {
    listen 127.0.0.1:{{PORT}};
    root {{DIR}}/www;
    add_header X-Content-Type-Options nosniff always;
    add_header X-Frame-Options DENY always;
    add_header Referrer-Policy no-referrer always;
    add_header Content-Security-Policy "default-src 'self'" always;
  }`)
	require.NoError(t, os.WriteFile(filepath.Join(ng.Dir, "www", "index.html"), []byte(`<!doctype html><link rel="stylesheet" href="/app.css"><p>hello`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(ng.Dir, "www", "app.css"), []byte("p{}"), 0o644))
	dir := t.TempDir()
	url := fmt.Sprintf("http://127.0.0.1:%d", ng.Port)
	r := runIn(t, dir, nil, "--action", "verify", "--base-url", url, "--json")
	assert.Contains(t, r.stderr, "note: no deploy.json: verifying "+url+" with the checks that need no configuration")
	var out struct {
		Suite struct {
			Results []struct{ Name, Category, Status, Message string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout+r.stderr)
	names := map[string]string{}
	for _, res := range out.Suite.Results {
		names[res.Name] = res.Status + ": " + res.Message
	}
	assert.Contains(t, names, "health /")
	assert.Contains(t, names["health /"], "pass: GET "+url+"/: HTML, 1 assets load", names)
	assert.Contains(t, names, "load /")
	assert.Contains(t, names, "security headers")
	assert.Contains(t, names, "response time /")
	for n := range names {
		assert.NotContains(t, n, "backend health", "no backend is assumed")
	}

	// A page whose asset is missing fails its health, by the same rule
	// as a deployment's frontend.
	require.NoError(t, os.Remove(filepath.Join(ng.Dir, "www", "app.css")))
	r = runIn(t, dir, nil, "verify", "--base-url", url, "--category", "health")
	assert.Equal(t, exitFailed, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "/app.css (status 404)")

	r = runIn(t, dir, nil, "verify", "--base-url", "ftp://x")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "verify: --base-url must be an http:// or https:// URL with a host")
}

func TestConfigSchemaMatchesPublished(t *testing.T) {
	r := runCLI(t, nil, "config", "schema")
	require.Equal(t, exitOK, r.code)
	published, err := os.ReadFile("../../schema/deploy.schema.json")
	require.NoError(t, err)
	assert.Equal(t, string(published), r.stdout)
}

func TestPreflightAgainstRealTarget(t *testing.T) {
	s := testenv.StartSSHD(t)
	reg := testenv.StartRegistry(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deploy.json")
	write := func(knownHosts, registry string) {
		require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"version": 1, "app": "web",
 "targets": [{"name": "local", "host": "127.0.0.1", "ssh": {"user": %q, "port": %d, "key": "env:SSH_KEY", "known_hosts": %q, "connect_timeout": "2s"}}],
 "backend": {"image": "%s/web/backend"}}`, s.User, s.Port, knownHosts, registry)), 0o644))
	}
	key, err := os.ReadFile(s.KeyPath)
	require.NoError(t, err)
	env := map[string]string{"SSH_KEY": string(key)}

	write(s.KnownHosts, reg.Addr)
	r := runIn(t, dir, env, "preflight", "--config", cfg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "[ssh:local] ok in ")
	assert.Contains(t, r.stderr, "[registry] ok in ")
	assert.Contains(t, r.stdout, "report: "+filepath.Join(dir, "reports", "preflight_"))
	assert.NotContains(t, allOutput(t, r), "PRIVATE KEY", "the key never reaches output")

	write(s.KnownHosts, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	j := runIn(t, dir, env, "preflight", "--json", "--config", cfg)
	assert.Equal(t, exitFailed, j.code)
	var rep struct {
		Status string `json:"status"`
		Steps  []struct {
			Name, Status string
			Attempts     int
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(j.stdout), &rep), j.stdout)
	assert.Equal(t, "failed", rep.Status)
	require.Len(t, rep.Steps, 3)
	assert.Equal(t, "registry", rep.Steps[2].Name)
	assert.Equal(t, "failed", rep.Steps[2].Status)
	assert.Equal(t, 3, rep.Steps[2].Attempts)
	assert.NotContains(t, allOutput(t, j), "PRIVATE KEY")
}
