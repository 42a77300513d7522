package config

import (
	"fmt"
	"slices"
	"strings"
)

// Route is one path nginx sends to the backend when a frontend is served:
// a prefix (every path that starts with it) or one exact path.
type Route struct {
	Path   string `json:"path"`
	Prefix bool   `json:"prefix"`
	// From says where the route comes from: "backend.routes[i]", or
	// "backend.health_path" for the health path added when no route
	// covers it.
	From string `json:"from"`
}

// ParseRoute reads a backend.routes entry: "/v1/" or "/v1/*" is the prefix
// /v1/, "/v1*" the prefix /v1 (also /v1beta), "/healthcheck" that path
// only. A query string is not part of a route.
func ParseRoute(s string) Route {
	if p, ok := strings.CutSuffix(s, "*"); ok {
		return Route{Path: p, Prefix: true}
	}
	return Route{Path: s, Prefix: strings.HasSuffix(s, "/")}
}

// String is the route as backend.routes writes it ("/v1/*", "/healthz").
func (r Route) String() string {
	if r.Prefix {
		return r.Path + "*"
	}
	return r.Path
}

// Location is the route's nginx location match: "^~ /v1/" (a prefix that
// no regular-expression location, such as the hashed-assets one, takes
// over) or "= /healthz".
func (r Route) Location() string {
	if r.Prefix {
		return "^~ " + r.Path
	}
	return "= " + r.Path
}

// Matches says whether nginx sends the path (its query string ignored)
// to the backend by this route.
func (r Route) Matches(p string) bool {
	p, _, _ = strings.Cut(p, "?")
	if r.Prefix {
		return strings.HasPrefix(p, r.Path)
	}
	return p == r.Path
}

// Routes is what nginx sends to the backend when a frontend is served:
// backend.routes, then the health path when none of them covers it (the
// health gate, the watch and the suite ask it through nginx). Without a
// frontend, nginx sends everything to the backend.
func (c *Config) Routes() []Route {
	var rs []Route
	for i, s := range c.Backend.Routes {
		r := ParseRoute(s)
		r.From = indexPath("backend.routes", i)
		rs = append(rs, r)
	}
	if h := c.Backend.HealthPath; h != "" && RouteFor(rs, h) == nil {
		p, _, _ := strings.Cut(h, "?")
		rs = append(rs, Route{Path: p, From: "backend.health_path"})
	}
	return rs
}

// RouteFor is the first route that sends p to the backend (nil: none).
func RouteFor(rs []Route, p string) *Route {
	for i := range rs {
		if rs[i].Matches(p) {
			return &rs[i]
		}
	}
	return nil
}

// RoutingTable says, one line each, what nginx does with a request: the
// backend's routes, ACME tokens, and the frontend for everything else (or
// the backend for everything, without a frontend).
func (c *Config) RoutingTable() []string {
	var lines []string
	if c.TLS.Enabled || len(c.Domains) > 0 {
		lines = append(lines, "/.well-known/acme-challenge/*  -> ACME tokens (certificates)")
	}
	if c.Frontend == nil {
		return append(lines, "/*  -> backend (no frontend: every path, every method)")
	}
	for _, r := range c.Routes() {
		lines = append(lines, fmt.Sprintf("%s  -> backend (%s)", r, r.From))
	}
	return append(lines, "everything else  -> frontend files; a path that is no file gets index.html (GET and HEAD only)")
}

// routeValidate checks backend.routes against the frontend and the checks
// that go through nginx.
func routeValidate(c *Config, add func(path, format string, args ...any)) {
	b := c.Backend
	seen := map[string]int{}
	for i, s := range b.Routes {
		p := indexPath("backend.routes", i)
		r := ParseRoute(s)
		if j, dup := seen[r.String()]; dup {
			add(p, "%s is already backend.routes[%d]", quote(s), j)
		}
		seen[r.String()] = i
		if r.Prefix && r.Path == "/" && c.Frontend != nil {
			add(p, "%s sends every path to the backend, so the frontend would serve nothing: remove the frontend section, or list the backend's own prefixes (e.g. \"/api/\")", quote(s))
		}
	}
	if c.Frontend == nil {
		return
	}
	if len(b.Routes) == 0 {
		add("backend.routes", "is required with a frontend: list the paths nginx sends to the backend, e.g. [\"/api/\", \"/healthcheck\"] (a trailing / or * is a prefix, anything else one exact path); every other path is answered by the frontend's files and index.html")
		return
	}
	rs := c.Routes()
	check := func(path, p string) {
		if p != "" && RouteFor(rs, p) == nil {
			add(path, "%s is not in backend.routes: with a frontend, nginx answers it from the frontend (index.html), not the backend; add a route that covers it", quote(p))
		}
	}
	for i, e := range c.Verification.Endpoints {
		check(indexPath("verification.endpoints", i)+".path", e.Path)
	}
	check("verification.upload_path", c.Verification.UploadPath)
	if c.Verification.Login.Path != "" {
		check("verification.login.path", c.Verification.Login.Path)
		check("verification.login.protected_path", c.Verification.Login.ProtectedPath)
	}
}

// ShadowedFiles lists the frontend's files (paths relative to its folder,
// "/"-separated) that a backend route takes: nginx sends their URL to the
// backend, so they are never served. Each entry is "file (route)".
func (c *Config) ShadowedFiles(files []string) []string {
	rs := c.Routes()
	var out []string
	for _, f := range files {
		u := "/" + f
		if r := RouteFor(rs, u); r != nil {
			out = append(out, fmt.Sprintf("%s (%s, %s)", f, r, r.From))
		} else if strings.HasSuffix(u, "/index.html") {
			// nginx's index: /docs/ serves docs/index.html.
			if r := RouteFor(rs, strings.TrimSuffix(u, "index.html")); r != nil {
				out = append(out, fmt.Sprintf("%s (%s, %s)", f, r, r.From))
			}
		}
	}
	slices.Sort(out)
	return out
}
