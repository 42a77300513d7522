package config

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The published schema is what editors check files against. These tests
// hold it to the loader with an independent JSON Schema validator: a file
// the loader accepts, the schema accepts; a file with a field-level problem
// (type, range, format, unknown key, missing key) both refuse. Cross-field
// rules (validate.go) are the loader's alone.

var (
	schemaOnce sync.Once
	schemaV    *jsonschema.Schema
	schemaErr  error
)

func compiledSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		data, err := Schema()
		if err != nil {
			schemaErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err = c.AddResource("deploy.schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		schemaV, schemaErr = c.Compile("deploy.schema.json")
	})
	require.NoError(t, schemaErr)
	return schemaV
}

func schemaAccepts(t testing.TB, data []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return compiledSchema(t).Validate(doc)
}

func TestSchemaAcceptsWhatTheLoaderAccepts(t *testing.T) {
	legacy, err := os.ReadFile("testdata/lawsker_deployment_config.json")
	require.NoError(t, err)
	imported, err := ParseLegacy(legacy, ImportOptions{})
	require.NoError(t, err)
	converted, err := Marshal(imported.Config)
	require.NoError(t, err)
	example, err := os.ReadFile("../examples/local.deploy.json")
	require.NoError(t, err)
	for name, data := range map[string][]byte{"minimal": []byte(minimal), "example": example, "converted legacy": converted} {
		_, err := Parse(data, ImportOptions{})
		require.NoError(t, err, name)
		assert.NoError(t, schemaAccepts(t, data), name)
	}
}

func TestSchemaRefusesFieldLevelProblems(t *testing.T) {
	// Each case is a whole targets[0] object with one field-level problem.
	targets := map[string]string{
		"port out of range": `{"name": "a", "host": "a.example.com", "ssh": {"port": 70000}}`,
		"wrong type":        `{"name": "a", "host": "a.example.com", "ssh": {"user": 7}}`,
		"unknown key":       `{"name": "a", "host": "a.example.com", "ssh": {"prot": 22}}`,
		"hostile name":      `{"name": "; rm -rf /", "host": "a.example.com"}`,
		"hostile host":      `{"name": "a", "host": "a.example.com; curl x"}`,
		"newline in user":   `{"name": "a", "host": "a.example.com", "ssh": {"user": "root\nx"}}`,
		"secret as value":   `{"name": "a", "host": "a.example.com", "ssh": {"key": "-----BEGIN OPENSSH PRIVATE KEY-----"}}`,
		"bad duration":      `{"name": "a", "host": "a.example.com", "ssh": {"connect_timeout": "soon"}}`,
		"signed duration":   `{"name": "a", "host": "a.example.com", "ssh": {"connect_timeout": "+5s"}}`,
		"relative root":     `{"name": "a", "host": "a.example.com", "root": "srv"}`,
	}
	for name, target := range targets {
		t.Run(name, func(t *testing.T) {
			data := []byte(`{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b"}, "targets": [` + target + `]}`)
			_, err := Parse(data, ImportOptions{})
			require.Error(t, err, "loader")
			assert.Error(t, schemaAccepts(t, data), "schema")
		})
	}
	for name, data := range map[string]string{
		"missing app":       `{"version": 1, "backend": {"image": "ghcr.io/a/b"}, "targets": [{"name": "a", "host": "h"}]}`,
		"null section":      `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b"}, "targets": [{"name": "a", "host": "h"}], "registry": null}`,
		"no targets":        `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b"}, "targets": []}`,
		"enum":              `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b"}, "targets": [{"name": "a", "host": "h"}], "tls": {"challenge": "tls-alpn-01"}}`,
		"category":          `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b"}, "targets": [{"name": "a", "host": "h"}], "verification": {"categories": ["chaos"]}}`,
		"future version":    `{"version": 2, "app": "web", "backend": {"image": "ghcr.io/a/b"}, "targets": [{"name": "a", "host": "h"}]}`,
		"image with tag":    `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b:latest"}, "targets": [{"name": "a", "host": "h"}]}`,
		"env key with dash": `{"version": 1, "app": "web", "backend": {"image": "ghcr.io/a/b", "env": {"A-B": "x"}}, "targets": [{"name": "a", "host": "h"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(data), ImportOptions{})
			require.Error(t, err, "loader")
			assert.Error(t, schemaAccepts(t, []byte(data)), "schema")
		})
	}
}
