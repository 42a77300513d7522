package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRoute(t *testing.T) {
	for in, want := range map[string]Route{
		"/v1/":         {Path: "/v1/", Prefix: true},
		"/v1/*":        {Path: "/v1/", Prefix: true},
		"/v1*":         {Path: "/v1", Prefix: true},
		"/healthcheck": {Path: "/healthcheck"},
	} {
		assert.Equal(t, want, ParseRoute(in), in)
	}
	r := ParseRoute("/v1/")
	assert.Equal(t, "^~ /v1/", r.Location())
	assert.True(t, r.Matches("/v1/stores?x=1"))
	assert.False(t, r.Matches("/v1"))
	e := ParseRoute("/healthcheck")
	assert.Equal(t, "= /healthcheck", e.Location())
	assert.True(t, e.Matches("/healthcheck?full=1"))
	assert.False(t, e.Matches("/healthcheck/deep"))
	assert.True(t, ParseRoute("/v1*").Matches("/v1beta/x"))
}

// The routing table says what nginx does with a request; the health path
// goes to the backend whether or not a route names it.
func TestRoutingTable(t *testing.T) {
	l, err := Parse([]byte(`{"version": 1, "app": "web", "targets": [{"name": "prod", "host": "h.example.com"}],
  "backend": {"image": "ghcr.io/acme/web", "health_path": "/healthcheck", "routes": ["/v1/", "/metrics"]},
  "frontend": {}, "domains": ["web.example.com"]}`), ImportOptions{})
	require.NoError(t, err)
	c := l.Config
	assert.Equal(t, []string{
		"/.well-known/acme-challenge/*  -> ACME tokens (certificates)",
		"/v1/*  -> backend (backend.routes[0])",
		"/metrics  -> backend (backend.routes[1])",
		"/healthcheck  -> backend (backend.health_path)",
		"everything else  -> frontend files; a path that is no file gets index.html (GET and HEAD only)",
	}, c.RoutingTable())
	assert.Contains(t, c.Summary(nil), "routing:      /.well-known/acme-challenge/*  -> ACME tokens")

	assert.Equal(t, []string{"docs/index.html (/docs/*, backend.routes[0])"}, (&Config{Frontend: &Frontend{}, Backend: Backend{Routes: []string{"/docs/"}}}).ShadowedFiles([]string{"docs/index.html"}))
	assert.Equal(t, []string{"healthcheck (/healthcheck, backend.health_path)", "v1/openapi.json (/v1/*, backend.routes[0])"},
		c.ShadowedFiles([]string{"index.html", "assets/app.12345678.js", "v1/openapi.json", "healthcheck", "metrics.html"}))

	c.Frontend = nil
	assert.Equal(t, "/*  -> backend (no frontend: every path, every method)", c.RoutingTable()[1])
	c.Backend.Network = "host"
	assert.True(t, strings.Contains(c.Summary(nil), "host network, a port from 18000-18999 told in PORT"), c.Summary(nil))
}

func TestLegacyImportRoutesTheAPI(t *testing.T) {
	l, err := LoadFile("testdata/lawsker_deployment_config.json", ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"/api/"}, l.Config.Backend.Routes)
}
