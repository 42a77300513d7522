package config

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testdata/lawsker_deployment_config.json is Lawsker's file as published
// (../shared/fixtures/lawsker/deployment_config.json).
func TestLegacyLawskerFileIsUnderstood(t *testing.T) {
	l, err := LoadFile("testdata/lawsker_deployment_config.json", ImportOptions{})
	require.NoError(t, err)
	c := l.Config
	assert.Equal(t, FormatLegacy, l.Format)
	assert.Equal(t, []string{"lawsker.com", "admin.lawsker.com"}, c.Domains)
	assert.True(t, c.TLS.Enabled)
	assert.Equal(t, "admin@lawsker.com", c.TLS.Email)
	assert.True(t, c.Monitoring.Enabled)
	assert.True(t, c.Execution.Parallel)
	assert.Equal(t, 3, c.Execution.MaxWorkers)
	assert.True(t, c.Snapshots.Enabled)
	assert.Equal(t, 30, c.Snapshots.RetentionDays)
	assert.Equal(t, "http://localhost:8000", c.Verification.BaseURL)
	assert.Equal(t, "https://lawsker.com", c.Verification.SSLBaseURL)
	assert.Equal(t, 8000, c.Backend.Port)
	require.NotNil(t, c.Database)
	assert.Equal(t, Database{Host: "localhost", Port: 5432, Name: "lawsker_prod", User: "lawsker_user",
		Password: "env:DB_PASSWORD", SSLMode: "prefer", PoolSizeEnv: "DB_POOL_SIZE", MaxOverflowEnv: "DB_MAX_OVERFLOW", URLEnv: "DATABASE_URL"}, *c.Database)
	assert.Equal(t, "redis://localhost:6379/0", c.Redis.URL)
	assert.Equal(t, "http://localhost:9090", c.Monitoring.PrometheusURL)
	assert.Equal(t, "http://localhost:3000", c.Monitoring.GrafanaURL)
	assert.Equal(t, Thresholds{ResponseTimeMS: 1000, DatabaseQueryMS: 100, MemoryUsagePercent: 80, CPUUsagePercent: 80, DiskUsagePercent: 90}, c.Verification.Thresholds)
	assert.Equal(t, Rollback{Auto: true, HealthCheckThreshold: 3, ErrorRateThreshold: 0.1, PerformanceDegradationThreshold: 2.0,
		WatchWindow: c.Rollback.WatchWindow}, c.Rollback)
	assert.Equal(t, "http://localhost:8000/api/v1/alerts/webhook", c.Notifications.WebhookURL)
	assert.Equal(t, []string{"alembic", "upgrade", "head"}, c.Backend.MigrateCommand)
	assert.Equal(t, "127.0.0.1", c.Targets[0].Host)
	assert.Equal(t, LawskerEndpoints(), c.Verification.Endpoints, "Lawsker's checks come with the import")
	assert.Equal(t, "/api/v1/upload", c.Verification.UploadPath)
	assert.Equal(t, "/api/v1/auth/login", c.Verification.Login.Path)
	assert.Len(t, l.Notes, 7, strings.Join(l.Notes, "\n"))
}

// The password reference is resolved from the environment at run time and
// the converted file carries the reference, never the value.
func TestLegacyImportNeverWritesTheSecret(t *testing.T) {
	data, err := os.ReadFile("testdata/lawsker_deployment_config.json")
	require.NoError(t, err)
	l, err := ParseLegacy(data, ImportOptions{Host: "app.lawsker.com", App: "lawsker", Image: "ghcr.io/lawsker/backend"})
	require.NoError(t, err)
	out, err := Marshal(l.Config)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"password": "env:DB_PASSWORD"`)

	r := &Resolver{LookupEnv: func(k string) (string, bool) {
		if k == "DB_PASSWORD" {
			return "pa55-word-from-env", true
		}
		return "", false
	}}
	v, err := r.Resolve(l.Config.Database.Password)
	require.NoError(t, err)
	assert.Equal(t, "pa55-word-from-env", v)
	assert.NotContains(t, string(out), "pa55-word-from-env")

	// The converted file loads as a native one.
	again, err := Parse(out, ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, FormatNative, again.Format)
	assert.Equal(t, l.Config, again.Config)
}

func TestLegacyProblems(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"password in clear", `{"base_url": "http://localhost:8000", "database_url": "postgresql://u:hunter2@localhost:5432/db"}`,
			[]string{"database_url: holds a password in clear; write ${DB_PASSWORD} (or another variable name) in its place and set that variable in the environment (line 1)"}},
		{"no password", `{"base_url": "http://localhost:8000", "database_url": "postgresql://u@localhost/db"}`,
			[]string{"database_url: has no password; write user:${DB_PASSWORD}@ and set DB_PASSWORD in the environment (line 1)"}},
		{"wrong scheme", `{"base_url": "http://localhost:8000", "database_url": "mysql://u:${P}@localhost/db"}`,
			[]string{`database_url: must be a postgresql:// URL, got scheme "mysql" (line 1)`}},
		{"variable outside a secret", `{"base_url": "http://localhost:8000", "notification": {"webhook_url": "https://hooks.example.com/${TOKEN}"}}`,
			[]string{"notification.webhook_url: holds ${TOKEN}; the native format keeps secrets only in secret fields, so write the URL out (line 1)"}},
		{"unknown key and types", "{\"ssl_enabled\": \"yes\",\n \"max_wrokers\": 3,\n \"performance_thresholds\": {\"cpu_usage_percent\": 120}}",
			[]string{`ssl_enabled: must be true or false, got a string (line 1)`, `max_wrokers: unknown key; did you mean "max_workers"? (line 2)`,
				`performance_thresholds.cpu_usage_percent: must be 1-100, got 120 (line 3)`}},
		{"hostile domain", `{"ssl_enabled": false, "domains": ["a.com; rm -rf /"]}`,
			[]string{`domains[0]: must be a domain name such as example.com (a leading '*.' for a wildcard), got "a.com; rm -rf /" (line 1)`}},
		{"tls without domains", `{"ssl_enabled": true, "notification": {"email": "a@b.co"}}`,
			[]string{"domains: must list at least one domain when tls.enabled is true (in the configuration converted from the legacy file)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), ImportOptions{})
			var ps Problems
			require.ErrorAs(t, err, &ps)
			got := make([]string, len(ps))
			for i, p := range ps {
				got[i] = p.String()
			}
			assert.ElementsMatch(t, tt.want, got)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestParseLegacyRefusesNative(t *testing.T) {
	_, err := ParseLegacy([]byte(minimal), ImportOptions{})
	assert.EqualError(t, err, `config: this is not a Lawsker deployment_config.json (it has "version" or none of ssl_enabled, database_url, base_url, backup_enabled, parallel_execution, performance_thresholds, auto_rollback_enabled)`)
}
