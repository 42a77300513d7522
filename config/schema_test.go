package config

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The published schema (schema/deploy.schema.json) is generated; this fails
// when the Go types changed and `lawsker-deploy config schema >
// schema/deploy.schema.json` was not run.
func TestPublishedSchemaIsCurrent(t *testing.T) {
	want, err := Schema()
	require.NoError(t, err)
	got, err := os.ReadFile("../schema/deploy.schema.json")
	require.NoError(t, err)
	if string(want) != string(got) {
		t.Fatal("schema/deploy.schema.json is stale: regenerate it with `go run ./cmd/lawsker-deploy config schema > schema/deploy.schema.json`")
	}
}

func TestSchemaShape(t *testing.T) {
	data, err := Schema()
	require.NoError(t, err)
	var s map[string]any
	require.NoError(t, json.Unmarshal(data, &s))
	assert.Equal(t, false, s["additionalProperties"])
	assert.ElementsMatch(t, []any{"version", "app", "targets", "backend"}, s["required"])
	props := s["properties"].(map[string]any)
	port := props["targets"].(map[string]any)["items"].(map[string]any)["properties"].(map[string]any)["ssh"].(map[string]any)["properties"].(map[string]any)["port"].(map[string]any)
	assert.Equal(t, map[string]any{"type": "integer", "minimum": 1.0, "maximum": 65535.0, "default": 22.0, "description": "SSH port"}, port)
	pw := props["database"].(map[string]any)["properties"].(map[string]any)["password"].(map[string]any)
	assert.Equal(t, SecretRefPattern, pw["pattern"])
}

// Every format's pattern (what editors check) must accept what the loader
// accepts for these samples, and refuse what it refuses.
func TestFormatPatternsAgreeWithLoader(t *testing.T) {
	samples := map[string][]string{
		"name":     {"web", "a-1", "-a", "A", ""},
		"host":     {"h.example.com", "127.0.0.1", "::1", "a b", "h;x"},
		"domain":   {"lawsker.com", "*.lawsker.com", "localhost", "a..b"},
		"abspath":  {"/srv", "/srv/app/", "srv", "/a b"},
		"path":     {"~/.ssh/known_hosts", ".cache/x", "/etc/ssh/k", "a b", "~"},
		"relpath":  {"backend", "a/b", "/abs", "a b"},
		"image":    {"ghcr.io/a/b", "127.0.0.1:5000/x/y", "b", "ghcr.io/a/b:latest"},
		"registry": {"ghcr.io", "127.0.0.1:5000", "ghcr.io/x"},
		"email":    {"a@b.co", "a@b", "a b@c.de"},
		"store":    {"target", "s3://bucket?region=x", "file:///var/snap", "ftp://x"},
	}
	for name, values := range samples {
		f := formats[name]
		for _, v := range values {
			if f.ok(v) {
				assert.True(t, f.re.MatchString(v), "%s %q: loader accepts, pattern refuses", name, v)
			}
		}
	}
	assert.True(t, formats["path"].ok("~/.ssh/known_hosts"))
	assert.False(t, formats["abspath"].ok("/srv/../etc"))
	assert.False(t, formats["host"].ok("a..b"))
}
