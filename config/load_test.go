package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// minimal is the smallest valid native file.
const minimal = `{
  "version": 1,
  "app": "web",
  "targets": [{"name": "prod", "host": "app.example.com"}],
  "backend": {"image": "ghcr.io/acme/web"}
}`

func TestParseMinimalAppliesDefaults(t *testing.T) {
	l, err := Parse([]byte(minimal), ImportOptions{})
	require.NoError(t, err)
	c := l.Config
	assert.Equal(t, FormatNative, l.Format)
	assert.Equal(t, "production", c.Environment)
	assert.Equal(t, 22, c.Targets[0].SSH.Port)
	assert.Equal(t, "deploy", c.Targets[0].SSH.User)
	assert.Equal(t, "/srv", c.Targets[0].Root)
	assert.Equal(t, 8000, c.Backend.Port)
	assert.Equal(t, "/api/v1/health", c.Backend.HealthPath)
	assert.Equal(t, 3, c.Backend.HealthGate.ConsecutivePasses)
	assert.Equal(t, time.Minute, c.Backend.HealthGate.Deadline.D())
	assert.True(t, c.Rollback.Auto)
	assert.Equal(t, 0.005, c.Rollback.ErrorRateThreshold)
	assert.True(t, c.Snapshots.Enabled)
	assert.Equal(t, "target", c.Snapshots.Store)
	assert.True(t, c.Execution.Parallel)
	assert.Equal(t, 3, c.Execution.MaxWorkers)
	assert.Equal(t, []string{"health", "functional", "performance", "security"}, c.Verification.Categories)
	assert.Nil(t, c.Database)
	assert.Nil(t, c.Frontend)
	// No app's conventions are assumed: the checks come from what the file
	// states (the health path), not from Lawsker's API.
	assert.Empty(t, c.Verification.Endpoints)
	assert.Empty(t, c.Verification.UploadPath)
	assert.Empty(t, c.Verification.Login.Path)
}

func TestExampleConfigIsValid(t *testing.T) {
	l, err := LoadFile("../examples/local.deploy.json", ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, "sample", l.Config.App)
	assert.Equal(t, 2222, l.Config.Targets[0].SSH.Port)
}

// TestParseProblems checks the exact message for each kind of bad input:
// every problem at once, each with its path and line.
func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", ``, []string{"file is empty; it must hold a JSON object"}},
		{"not an object", `[1]`, []string{"the file must hold a JSON object, got an array (line 1)"}},
		{"malformed", "{\n \"version\": 1,\n \"app\": }", []string{"malformed JSON at column 9: invalid character '}' looking for beginning of value (line 3)"}},
		{"truncated", `{"version": 1`, []string{"malformed JSON: the file ends before the value is complete (line 1)"}},
		{"trailing data", `{} {}`, []string{"unexpected data after the top-level JSON value (line 1)"}},
		{"duplicate key", "{\"app\": \"a\",\n\"app\": \"b\"}", []string{`key "app" appears twice (first on line 1); JSON parsers disagree on which wins, so write it once (line 2)`}},
		{"missing required", `{}`, []string{
			"app: is required (line 1)", "backend: is required (line 1)", "targets: is required (line 1)", "version: is required (line 1)"}},
		{"wrong types and ranges", `{
  "version": 1,
  "app": "web",
  "targets": [{"name": "prod", "host": "h.example.com", "ssh": {"port": 70000, "user": 7}}],
  "backend": {"image": "ghcr.io/acme/web", "port": "80"},
  "execution": {"max_workers": 2.5, "parallel": "yes"}
}`, []string{
			`targets[0].ssh.port: must be 1-65535, got 70000 (line 4)`,
			`targets[0].ssh.user: must be a string, got a number (line 4)`,
			`backend.port: must be a whole number, got a string (line 5)`,
			`execution.max_workers: must be a whole number, got 2.5 (line 6)`,
			`execution.parallel: must be true or false, got a string (line 6)`,
		}},
		{"unknown keys", `{
  "version": 1, "app": "web",
  "targets": [{"name": "prod", "host": "h.example.com", "ssh": {"prot": 22}}],
  "backend": {"image": "ghcr.io/acme/web"},
  "colour": "blue"
}`, []string{
			`targets[0].ssh.prot: unknown key; did you mean "port"? (line 3)`,
			`colour: unknown key; known keys: app, backend, database, domains, environment, execution, frontend, maintenance, monitoring, notifications, redis, registry, rollback, rollout, snapshots, targets, tls, verification, version (line 5)`,
		}},
		{"hostile strings", `{
  "version": 1,
  "app": "; rm -rf /",
  "targets": [{"name": "$(reboot)", "host": "h.example.com; curl evil", "ssh": {"user": "root\nx"}}],
  "backend": {"image": "ghcr.io/acme/web", "health_path": "/health\r\nX-Evil: 1", "env": {"A B": "x"}}
}`, []string{
			`app: must be lowercase letters, digits and '-' (1-63 characters, no '-' at either end), got "; rm -rf /" (line 3)`,
			`targets[0].name: must be lowercase letters, digits and '-' (1-63 characters, no '-' at either end), got "$(reboot)" (line 4)`,
			`targets[0].host: must be a host name or an IP address, got "h.example.com; curl evil" (line 4)`,
			`targets[0].ssh.user: must not contain control characters (newline, tab, NUL...), got "root\nx" (line 4)`,
			`backend.env: key "A B" must be an environment variable name (letters, digits and '_', not starting with a digit) (line 5)`,
			`backend.health_path: must not contain control characters (newline, tab, NUL...), got "/health\r\nX-Evil: 1" (line 5)`,
		}},
		{"secret given as a value", `{
  "version": 1, "app": "web",
  "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "secret_env": {"API_KEY": "sk_live_hunter2"}},
  "database": {"name": "app", "user": "app", "password": "hunter2"}
}`, []string{
			`backend.secret_env.API_KEY: must be a secret reference (env:NAME or file:PATH), not a value; put the secret in an environment variable or a file and reference it (line 4)`,
			`database.password: must be a secret reference (env:NAME or file:PATH), not a value; put the secret in an environment variable or a file and reference it (line 5)`,
		}},
		{"future version", `{"version": 2, "app": "web", "targets": [{"name": "a", "host": "h.example.com"}], "backend": {"image": "ghcr.io/a/b"}}`,
			[]string{"version: version 2 is not one this release reads (it reads 1); upgrade lawsker-deploy or convert the file (line 1)"}},
		{"empty targets and null required", `{"version": 1, "app": "web", "targets": [], "backend": null}`,
			[]string{"backend: is required and must not be null (line 1)", "targets: must list at least 1 item(s) (line 1)"}},
		{"cross-field rules", `{
  "version": 1, "app": "web",
  "targets": [{"name": "a", "host": "h.example.com"}, {"name": "a", "host": "h.example.com"}],
  "registry": {"host": "ghcr.io", "username": "bot"},
  "backend": {"image": "docker.io/acme/web", "env": {"X": "1"}, "secret_env": {"X": "env:X"},
              "health_gate": {"request_timeout": "2m", "deadline": "1m"}},
  "domains": ["*.example.com", "EXAMPLE.com", "example.com"],
  "tls": {"enabled": true},
  "notifications": {"email": "ops@example.com"},
  "database": {"name": "app", "user": "app", "password": "env:DB_PASSWORD", "bootstrap": true}
}`, []string{
			`targets[1].host: "h.example.com" port 22 is already targets[0]; list each host once (line 3)`,
			`targets[1].name: "a" is already the name of targets[0]; target names must be unique (line 3)`,
			`registry: username and password go together: set both or neither (line 4)`,
			`backend.image: must be in registry.host "ghcr.io" (write ghcr.io/...) (line 5)`,
			`backend.secret_env.X: is also set in backend.env; a variable comes from one place (line 5)`,
			`backend.health_gate.request_timeout: must not exceed backend.health_gate.deadline (1m0s) (line 6)`,
			`domains[0]: wildcard "*.example.com" needs tls.challenge "dns-01" (HTTP-01 cannot validate wildcards) (line 7)`,
			`domains[2]: "example.com" is already domains[1] (line 7)`,
			`notifications.email: needs notifications.smtp (the mail server to send through) (line 9)`,
			`database.bootstrap: needs database.admin_user and database.admin_password (the role that creates the application role and database) (line 10)`,
			`tls.email: is required when tls.enabled is true (the ACME account's contact)`,
		}},
		{"snapshot store credentials and keys", `{
  "version": 1, "app": "web", "targets": [{"name": "a", "host": "h.example.com"}], "backend": {"image": "ghcr.io/a/b"},
  "snapshots": {"store": "file:///var/backups", "s3_access_key_id": "env:S3_KEY", "s3_secret_access_key": "env:S3_SECRET",
                "age_identity": "env:AGE_ID"}
}`, []string{
			`snapshots.s3_access_key_id: is only used with an s3:// snapshots.store (line 3)`,
			`snapshots.age_identity: decrypts what snapshots.age_recipient encrypts; set the recipient too (line 4)`,
		}},
		{"half an S3 key", `{
  "version": 1, "app": "web", "targets": [{"name": "a", "host": "h.example.com"}], "backend": {"image": "ghcr.io/a/b"},
  "snapshots": {"store": "s3://backups?region=eu-west-1", "s3_access_key_id": "env:S3_KEY"}
}`, []string{
			`snapshots.s3_access_key_id: and snapshots.s3_secret_access_key go together: set both or neither (line 3)`,
		}},
		{"bad formats", `{
  "version": 1, "app": "web",
  "targets": [{"name": "a", "host": "h.example.com", "root": "/srv/../etc", "ssh": {"connect_timeout": "soon"}}],
  "backend": {"image": "ghcr.io/acme/web:latest"},
  "redis": {"url": "redis://:pw@cache:6379/0"},
  "snapshots": {"store": "ftp://x"},
  "tls": {"challenge": "tls-alpn-01", "email": "not-an-email"}
}`, []string{
			`targets[0].root: must be an absolute path of letters, digits and ._+@=,- (no spaces, no '..'), got "/srv/../etc" (line 3)`,
			`targets[0].ssh.connect_timeout: must be a duration such as "30s", "10m" or "1h30m", got "soon" (line 3)`,
			`backend.image: must be an image repository without tag or digest, such as ghcr.io/lawsker/backend, got "ghcr.io/acme/web:latest" (line 4)`,
			`redis.url: must be a redis:// or rediss:// URL with a host (the password goes in redis.password, not in the URL), got "redis://:pw@cache:6379/0" (line 5)`,
			`snapshots.store: must be "target" (on the target host over SFTP) or a s3://, gs://, azblob:// or file:// URL, got "ftp://x" (line 6)`,
			`tls.challenge: must be one of "http-01", "dns-01", got "tls-alpn-01" (line 7)`,
			`tls.email: must be an email address such as ops@example.com, got "not-an-email" (line 7)`,
		}},
		{"ports as the app wants them", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "network": "host", "port_env": "LISTEN", "extra_ports": ["grpc", "grpc", "admin"],
              "env": {"LISTEN": "127.0.0.1:{port}", "METRICS_ADDR": "127.0.0.1:{port.metrics}"}, "host_port_min": 18000, "host_port_max": 18003}
}`, []string{
			`backend.extra_ports[1]: repeats "grpc" (line 3)`,
			`backend.env.LISTEN: is backend.port_env, which lawsker-deploy sets to the release's bare port: remove it, or put {port} in the variable the app reads (e.g. "LISTEN": "127.0.0.1:{port}") and set port_env to a name the app ignores (line 4)`,
			`backend.env.METRICS_ADDR: references {port.metrics}, which backend.extra_ports does not name (line 4)`,
			`backend.host_port_max: leaves 4 ports from backend.host_port_min; two releases side by side need 8 (4 each: their own and backend.extra_ports) (line 4)`,
		}},
		{"extra ports on a bridge network", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "extra_ports": ["grpc"]}
}`, []string{
			`backend.extra_ports: needs backend.network "host" (a bridge network publishes one port) (line 3)`,
		}},
		{"a port name that is not one", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "network": "host", "extra_ports": ["Admin"]}
}`, []string{
			`backend.extra_ports[0]: must be a port name (lowercase letters, digits and '_', starting with a letter), got "Admin" (line 3)`,
		}},
		{"a frontend without routes", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web"},
  "frontend": {}
}`, []string{
			`backend.routes: is required with a frontend: list the paths nginx sends to the backend, e.g. ["/api/", "/healthcheck"] (a trailing / or * is a prefix, anything else one exact path); every other path is answered by the frontend's files and index.html`,
		}},
		{"routes that cannot be", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "routes": ["/v1/", "/v1/*"]},
  "frontend": {},
  "verification": {"endpoints": [{"path": "/v1/stores"}, {"path": "/stats"}], "upload_path": "/upload"}
}`, []string{
			`backend.routes[1]: "/v1/*" is already backend.routes[0] (line 3)`,
			`verification.endpoints[1].path: "/stats" is not in backend.routes: with a frontend, nginx answers it from the frontend (index.html), not the backend; add a route that covers it (line 5)`,
			`verification.upload_path: "/upload" is not in backend.routes: with a frontend, nginx answers it from the frontend (index.html), not the backend; add a route that covers it (line 5)`,
		}},
		{"every path to the backend beside a frontend", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "routes": ["/*"]},
  "frontend": {}
}`, []string{
			`backend.routes[0]: "/*" sends every path to the backend, so the frontend would serve nothing: remove the frontend section, or list the backend's own prefixes (e.g. "/api/") (line 3)`,
		}},
		{"routes that are no paths", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "routes": ["v2", "/a b", "/x;y", "/a*b"]}
}`, []string{
			`backend.routes[0]: must be a URL path starting with '/' (no query, no spaces, quotes, ';', '{' or '$'), ending in '/' or '*' for a prefix, got "v2" (line 3)`,
			`backend.routes[1]: must be a URL path starting with '/' (no query, no spaces, quotes, ';', '{' or '$'), ending in '/' or '*' for a prefix, got "/a b" (line 3)`,
			`backend.routes[2]: must be a URL path starting with '/' (no query, no spaces, quotes, ';', '{' or '$'), ending in '/' or '*' for a prefix, got "/x;y" (line 3)`,
			`backend.routes[3]: must be a URL path starting with '/' (no query, no spaces, quotes, ';', '{' or '$'), ending in '/' or '*' for a prefix, got "/a*b" (line 3)`,
		}},
		{"database URL twice and a query that is not one", `{
  "version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "secret_env": {"DATABASE_URL": "env:DB_URL"}},
  "database": {"name": "web", "user": "web", "password": "env:PW", "migration_version_query": "DELETE FROM versions"}
}`, []string{
			`backend.secret_env.DATABASE_URL: is the URL lawsker-deploy builds from database.* (database.url_env), with database.password: remove it (no secret is written twice), or set database.url_env to another name (line 3)`,
			`database.migration_version_query: must be a SELECT (or WITH ... SELECT) returning one row of one column, got "DELETE FROM versions" (line 4)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), ImportOptions{})
			require.Error(t, err)
			var ps Problems
			require.ErrorAs(t, err, &ps)
			got := make([]string, len(ps))
			for i, p := range ps {
				got[i] = p.String()
			}
			assert.ElementsMatch(t, tt.want, got)
		})
	}
}

func TestProblemsErrorListsAll(t *testing.T) {
	_, err := Parse([]byte(`{}`), ImportOptions{})
	require.Error(t, err)
	assert.Equal(t, "config: 4 problems:\n  app: is required (line 1)\n  backend: is required (line 1)\n  targets: is required (line 1)\n  version: is required (line 1)", err.Error())
}

func TestSecretValueNeverEchoed(t *testing.T) {
	in := strings.Replace(minimal, `"backend": {"image": "ghcr.io/acme/web"}`,
		`"backend": {"image": "ghcr.io/acme/web", "secret_env": {"K": "s3cr3t-value-xyz"}}`, 1)
	_, err := Parse([]byte(in), ImportOptions{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cr3t-value-xyz")
}

func TestLoadFileErrors(t *testing.T) {
	_, err := LoadFile("does-not-exist.json", ImportOptions{})
	assert.EqualError(t, err, "config: stat does-not-exist.json: no such file or directory (pass --config with the path of your deploy.json)")
	dir := t.TempDir()
	_, err = LoadFile(dir, ImportOptions{})
	assert.EqualError(t, err, "config: "+dir+" is a folder; pass --config with the path of a deploy.json file")
	big := dir + "/big.json"
	require.NoError(t, os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600))
	_, err = LoadFile(big, ImportOptions{})
	assert.ErrorContains(t, err, "a configuration file is at most 1048576 bytes")
}

func TestDeepNestingRefused(t *testing.T) {
	in := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	_, err := Parse([]byte(in), ImportOptions{})
	assert.EqualError(t, err, "config: nesting deeper than 32 levels (line 1)")
}

func TestMarshalRoundTrip(t *testing.T) {
	l, err := LoadFile("../examples/local.deploy.json", ImportOptions{})
	require.NoError(t, err)
	data, err := Marshal(l.Config)
	require.NoError(t, err)
	again, err := Parse(data, ImportOptions{})
	require.NoError(t, err, string(data))
	assert.Equal(t, l.Config, again.Config)
}

func TestValidateBuiltInCode(t *testing.T) {
	l, err := Parse([]byte(minimal), ImportOptions{})
	require.NoError(t, err)
	c := l.Config
	c.Targets[0].SSH.Port = 0
	c.Execution.MaxWorkers = 100
	assert.EqualError(t, c.Validate(), "config: execution.max_workers: must be 1-64, got 100")
	assert.Equal(t, 100, c.Execution.MaxWorkers, "unchanged on error")
	c.Execution.MaxWorkers = 8
	require.NoError(t, c.Validate())
	assert.Equal(t, 22, c.Targets[0].SSH.Port, "zero takes the default")
	assert.Equal(t, 8, c.Execution.MaxWorkers)
}
