package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/lawsker/lawsker-deploy/config"
)

// BackendHealth GETs the health endpoint and judges the answer by
// backend.health_expect (HealthAnswer): by default a 200 and, when the
// body is a JSON object with a "status" field, a field that says healthy
// ("ok", "healthy", "pass", "up", ...) — a 200 with an error body fails;
// an HTML page always does.
func BackendHealth(h *HTTP, url string, want config.HealthExpect) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		resp, err := h.Get(ctx, url)
		if err != nil {
			return Result{}, err
		}
		if err := HealthAnswer(want, resp.Status, resp.Body, resp.Header.Get("Content-Type")); err != nil {
			return Failed("GET %s: %v", url, err), nil
		}
		return Passed("GET %s: %d %s", url, resp.Status, snippet(resp.Body)), nil
	}
}

// HealthAnswer judges a health endpoint's answer, the one rule of the
// health gate, the watch window and the suite: a status of want.Status
// (200 when unset), never an HTML page (the frontend's fallback answered),
// want.Body in the body when set, and want.JSON's fields with their
// values when set, else a "status" field, when there is one, that says
// healthy.
func HealthAnswer(want config.HealthExpect, status int, body []byte, contentType string) error {
	statuses := want.Status
	if len(statuses) == 0 {
		statuses = []int{200}
	}
	if !slices.Contains(statuses, status) {
		return fmt.Errorf("status %d (healthy: %v): %s", status, statuses, snippet(body))
	}
	if strings.Contains(contentType, "text/html") || looksLikeHTML(body) {
		return fmt.Errorf("%d, but it is an HTML page (%s), not the backend's answer: the frontend's fallback (index.html) answered, so the health path does not reach the backend; route it to the backend", status, snippet(body))
	}
	if want.Body != "" && !strings.Contains(string(body), want.Body) {
		return fmt.Errorf("%d, but the body does not contain %q (backend.health_expect.body): %s", status, want.Body, snippet(body))
	}
	if len(want.JSON) > 0 {
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			return fmt.Errorf("%d, but the body is not JSON (backend.health_expect.json): %s", status, snippet(body))
		}
		for _, k := range slices.Sorted(maps.Keys(want.JSON)) {
			v, ok := dig(doc, k)
			if !ok {
				return fmt.Errorf("%d, but the JSON body has no %s (backend.health_expect.json): %s", status, k, snippet(body))
			}
			if got := fmt.Sprint(v); got != want.JSON[k] {
				return fmt.Errorf("%d, but %s is %q, not %q (backend.health_expect.json): %s", status, k, got, want.JSON[k], snippet(body))
			}
		}
		return nil
	}
	field, has, err := jsonField(body, "status")
	switch {
	case err != nil && strings.Contains(contentType, "json"):
		return fmt.Errorf("%d, but the JSON body does not parse: %v", status, err)
	case has && !healthyWord(field):
		return fmt.Errorf("%d, but the body says status %q: %s", status, field, snippet(body))
	}
	return nil
}

// SiteHealth is the health of any URL (verify --base-url with no
// configuration): a 200, and when the answer is a page, the assets it
// references load (Frontend).
func SiteHealth(h *HTTP, url string) func(context.Context) (Result, error) {
	page := Frontend(h, url)
	return func(ctx context.Context) (Result, error) {
		resp, err := h.Get(ctx, url)
		if err != nil {
			return Result{}, err
		}
		if resp.Status != 200 {
			return Failed("GET %s: status %d: %s", url, resp.Status, snippet(resp.Body)), nil
		}
		if strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			return page(ctx)
		}
		return Passed("GET %s: 200 %s", url, snippet(resp.Body)), nil
	}
}

// assetIsPage says an asset that is not a page was answered with HTML.
func assetIsPage(p, contentType string) bool {
	ext := strings.ToLower(path.Ext(p))
	if ext == ".html" || ext == ".htm" || ext == "" {
		return false
	}
	return strings.Contains(contentType, "text/html")
}

func looksLikeHTML(b []byte) bool {
	t := strings.ToLower(strings.TrimSpace(string(b[:min(len(b), 64)])))
	return strings.HasPrefix(t, "<!doctype html") || strings.HasPrefix(t, "<html")
}

func healthyWord(s string) bool {
	switch strings.ToLower(s) {
	case "ok", "healthy", "pass", "up", "green", "serving":
		return true
	}
	return false
}

// Postgres connects, runs SELECT 1, and reports the server version and the
// connections in use against max_connections (a warning above 80%).
func Postgres(cfg *pgx.ConnConfig) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return Result{}, fmt.Errorf("connecting to %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			return Result{}, fmt.Errorf("SELECT 1: %v", err)
		}
		var version string
		var used, maxConn int
		if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), (SELECT count(*) FROM pg_stat_activity), current_setting('max_connections')::int`).Scan(&version, &used, &maxConn); err != nil {
			return Result{}, fmt.Errorf("reading connections: %w", err)
		}
		r := Passed("PostgreSQL %s: %d of %d connections in use", version, used, maxConn)
		if used*100 > 80*maxConn {
			r = Warned("PostgreSQL %s: %d of %d connections in use (over 80%%)", version, used, maxConn)
		}
		return r.With("version", version, "connections", used, "max_connections", maxConn), nil
	}
}

// Redis PINGs and reports memory in use against maxmemory (a warning above
// 90% when a limit is set).
func Redis(opts *redis.Options) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		c := redis.NewClient(opts)
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil {
			return Result{}, fmt.Errorf("PING %s: %w", opts.Addr, err)
		}
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return Result{}, fmt.Errorf("INFO memory: %w", err)
		}
		used, limit := infoInt(info, "used_memory"), infoInt(info, "maxmemory")
		if limit > 0 && used*100 > 90*limit {
			return Warned("Redis at %s: %d of %d bytes of memory in use (over 90%%)", opts.Addr, used, limit).With("used_memory", used, "maxmemory", limit), nil
		}
		msg := fmt.Sprintf("Redis at %s: PONG, %d bytes in use", opts.Addr, used)
		if limit == 0 {
			msg += " (no maxmemory set)"
		} else {
			msg += fmt.Sprintf(" of %d", limit)
		}
		return Passed("%s", msg).With("used_memory", used, "maxmemory", limit), nil
	}
}

func infoInt(info, key string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

var assetRef = regexp.MustCompile(`(?i)<(?:script[^>]+src|link[^>]+href)=["']([^"']+)["']`)

// Frontend GETs the page: 200 and HTML; then every asset it references on
// the same site (scripts, stylesheets; at most 20) must load.
func Frontend(h *HTTP, base string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		resp, err := h.Get(ctx, base)
		if err != nil {
			return Result{}, err
		}
		if resp.Status != 200 {
			return Failed("GET %s: status %d", base, resp.Status), nil
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "text/html") {
			return Failed("GET %s: Content-Type %q, not HTML", base, ct), nil
		}
		baseURL, err := url.Parse(base)
		if err != nil {
			return Result{}, err
		}
		var assets, broken []string
		for _, m := range assetRef.FindAllSubmatch(resp.Body, -1) {
			ref, err := baseURL.Parse(string(m[1]))
			if err != nil || ref.Host != baseURL.Host || len(assets) >= 20 {
				continue
			}
			assets = append(assets, ref.String())
			a, err := h.Get(ctx, ref.String())
			switch {
			case err != nil:
				broken = append(broken, fmt.Sprintf("%s (%v)", ref.Path, err))
			case a.Status != 200:
				broken = append(broken, fmt.Sprintf("%s (status %d)", ref.Path, a.Status))
			case assetIsPage(ref.Path, a.Header.Get("Content-Type")):
				// A missing file answered by the SPA fallback (index.html,
				// 200) is not a loaded asset.
				broken = append(broken, fmt.Sprintf("%s (answered with an HTML page, %q: the frontend's fallback for a missing file)", ref.Path, a.Header.Get("Content-Type")))
			}
		}
		if len(broken) > 0 {
			return Failed("GET %s: %d of %d assets do not load: %s", base, len(broken), len(assets), strings.Join(broken, ", ")).With("assets", assets), nil
		}
		return Passed("GET %s: HTML, %d assets load", base, len(assets)).With("assets", assets), nil
	}
}

// Prometheus checks /-/ready and that every active scrape target is up.
func Prometheus(h *HTTP, base string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		base = strings.TrimRight(base, "/")
		ready, err := h.Get(ctx, base+"/-/ready")
		if err != nil {
			return Result{}, err
		}
		if ready.Status != 200 {
			return Failed("GET %s/-/ready: status %d: %s", base, ready.Status, snippet(ready.Body)), nil
		}
		resp, err := h.Get(ctx, base+"/api/v1/targets?state=active")
		if err != nil {
			return Result{}, err
		}
		var body struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL string `json:"scrapeUrl"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := jsonUnmarshal(resp.Body, &body); err != nil {
			return Result{}, fmt.Errorf("GET %s/api/v1/targets: %w", base, err)
		}
		var down []string
		for _, t := range body.Data.ActiveTargets {
			if t.Health != "up" {
				down = append(down, fmt.Sprintf("%s (%s: %s)", t.ScrapeURL, t.Health, t.LastError))
			}
		}
		n := len(body.Data.ActiveTargets)
		if n == 0 {
			return Warned("Prometheus is ready but has no active scrape targets (is the backend's /metrics in its configuration?)"), nil
		}
		if len(down) > 0 {
			return Failed("Prometheus: %d of %d scrape targets are not up: %s", len(down), n, strings.Join(down, "; ")), nil
		}
		return Passed("Prometheus ready, %d scrape targets up", n), nil
	}
}

// Grafana checks /api/health: 200 and "database": "ok".
func Grafana(h *HTTP, base string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		resp, err := h.Get(ctx, strings.TrimRight(base, "/")+"/api/health")
		if err != nil {
			return Result{}, err
		}
		if resp.Status != 200 {
			return Failed("GET %s/api/health: status %d: %s", base, resp.Status, snippet(resp.Body)), nil
		}
		db, _, err := jsonField(resp.Body, "database")
		if err != nil {
			return Failed("GET %s/api/health: the body is not JSON: %s", base, snippet(resp.Body)), nil
		}
		if db != "ok" {
			return Failed("Grafana's database is %q: %s", db, snippet(resp.Body)), nil
		}
		version, _, _ := jsonField(resp.Body, "version")
		return Passed("Grafana %s healthy", version), nil
	}
}
