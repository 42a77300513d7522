package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Endpoint is a declarative API check.
type Endpoint struct {
	Method     string            // default GET
	Path       string            // joined to the base URL
	Headers    map[string]string // extra request headers
	Body       string            // request body (JSON when it starts with { or [)
	Expect     []int             // accepted statuses (default 200)
	JSONFields []string          // dotted fields the JSON body must have
}

// API sends the endpoint's request and checks the status and JSON fields.
func API(h *HTTP, base string, ep Endpoint) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		method := ep.Method
		if method == "" {
			method = http.MethodGet
		}
		expect := ep.Expect
		if len(expect) == 0 {
			expect = []int{200}
		}
		header := http.Header{}
		for k, v := range ep.Headers {
			header.Set(k, v)
		}
		var body *strings.Reader
		if ep.Body != "" {
			body = strings.NewReader(ep.Body)
			if t := strings.TrimSpace(ep.Body); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
				header.Set("Content-Type", "application/json")
			}
		}
		u := strings.TrimRight(base, "/") + ep.Path
		var resp *Response
		var err error
		if body != nil {
			resp, err = h.Do(ctx, method, u, body, header)
		} else {
			resp, err = h.Do(ctx, method, u, nil, header)
		}
		if err != nil {
			return Result{}, err
		}
		if !slices.Contains(expect, resp.Status) {
			return Failed("%s %s: status %d, expected one of %v: %s", method, ep.Path, resp.Status, expect, snippet(resp.Body)), nil
		}
		if len(ep.JSONFields) > 0 && resp.Status < 300 {
			var doc any
			if err := json.Unmarshal(resp.Body, &doc); err != nil {
				return Failed("%s %s: status %d, but the body is not JSON: %s", method, ep.Path, resp.Status, snippet(resp.Body)), nil
			}
			var missing []string
			for _, f := range ep.JSONFields {
				if _, ok := dig(doc, f); !ok {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 {
				return Failed("%s %s: the JSON body lacks %s: %s", method, ep.Path, strings.Join(missing, ", "), snippet(resp.Body)), nil
			}
		}
		return Passed("%s %s: status %d", method, ep.Path, resp.Status), nil
	}
}

// dig follows a dotted path through JSON objects.
func dig(doc any, path string) (any, bool) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Login describes the authentication flow.
type Login struct {
	Path          string // e.g. /api/v1/auth/login
	Form          bool   // form-encoded (OAuth2 password flow) instead of JSON
	Username      string // "" skips the valid-login half
	Password      string
	TokenField    string // JSON field of the token (default access_token, then token)
	ProtectedPath string // must answer 200 with the token (e.g. /api/v1/users/me)
}

func (l Login) request(ctx context.Context, h *HTTP, base, user, pw string) (*Response, error) {
	header := http.Header{}
	var body string
	if l.Form {
		header.Set("Content-Type", "application/x-www-form-urlencoded")
		body = url.Values{"username": {user}, "password": {pw}}.Encode()
	} else {
		header.Set("Content-Type", "application/json")
		b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
		body = string(b)
	}
	return h.Do(ctx, http.MethodPost, strings.TrimRight(base, "/")+l.Path, strings.NewReader(body), header)
}

// AuthFlow checks that an invalid login is refused and, with credentials,
// that a valid login yields a token a protected endpoint accepts. It
// returns the token through token (for the upload check) when given.
func AuthFlow(h *HTTP, base string, l Login, token *string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		bad, err := l.request(ctx, h, base, "lawsker-verify-nobody", "wrong-password-for-verify")
		if err != nil {
			return Result{}, err
		}
		if bad.Status != 400 && bad.Status != 401 && bad.Status != 403 && bad.Status != 422 {
			return Failed("POST %s with wrong credentials: status %d, expected a refusal (400/401/403/422): %s", l.Path, bad.Status, snippet(bad.Body)), nil
		}
		if l.Username == "" {
			return Passed("POST %s with wrong credentials: refused (%d); valid login not checked: no credentials configured", l.Path, bad.Status), nil
		}
		good, err := l.request(ctx, h, base, l.Username, l.Password)
		if err != nil {
			return Result{}, err
		}
		if good.Status != 200 {
			return Failed("POST %s as %s: status %d: %s", l.Path, l.Username, good.Status, snippet(good.Body)), nil
		}
		var doc any
		_ = json.Unmarshal(good.Body, &doc)
		field := l.TokenField
		var tok any
		var ok bool
		if field != "" {
			tok, ok = dig(doc, field)
		} else if tok, ok = dig(doc, "access_token"); !ok {
			tok, ok = dig(doc, "token")
		}
		t, _ := tok.(string)
		if !ok || t == "" {
			return Failed("POST %s as %s: 200, but no token in the body", l.Path, l.Username), nil
		}
		if token != nil {
			*token = t
		}
		if l.ProtectedPath != "" {
			resp, err := h.Do(ctx, http.MethodGet, strings.TrimRight(base, "/")+l.ProtectedPath, nil, http.Header{"Authorization": {"Bearer " + t}})
			if err != nil {
				return Result{}, err
			}
			if resp.Status != 200 {
				return Failed("GET %s with the token: status %d: %s", l.ProtectedPath, resp.Status, snippet(resp.Body)), nil
			}
		}
		return Passed("invalid login refused (%d); %s logs in and %s accepts the token", bad.Status, l.Username, l.ProtectedPath), nil
	}
}

// Upload posts a small multipart file; a 401/403 without a token skips.
func Upload(h *HTTP, base, path string, token *string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, err := mw.CreateFormFile("file", "lawsker-verify.txt")
		if err != nil {
			return Result{}, err
		}
		fmt.Fprint(fw, "lawsker-deploy verification upload\n")
		mw.Close()
		header := http.Header{"Content-Type": {mw.FormDataContentType()}}
		if token != nil && *token != "" {
			header.Set("Authorization", "Bearer "+*token)
		}
		size := buf.Len()
		resp, err := h.Do(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, &buf, header)
		if err != nil {
			return Result{}, err
		}
		switch {
		case resp.Status >= 200 && resp.Status < 300:
			return Passed("POST %s (multipart, %d bytes): status %d", path, size, resp.Status), nil
		case (resp.Status == 401 || resp.Status == 403) && (token == nil || *token == ""):
			return Skipped("POST %s needs authentication (%d) and no credentials are configured", path, resp.Status), nil
		}
		return Failed("POST %s (multipart): status %d: %s", path, resp.Status, snippet(resp.Body)), nil
	}
}

// DBTransaction creates a table, writes, reads and rolls back in one
// transaction, then checks nothing was left behind.
func DBTransaction(cfg *pgx.ConnConfig) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return Result{}, fmt.Errorf("connecting to %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		table := "lawsker_verify_probe"
		tx, err := conn.Begin(ctx)
		if err != nil {
			return Result{}, err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if _, err := tx.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, note text)"); err != nil {
			return Result{}, fmt.Errorf("CREATE TABLE in a transaction: %w", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (1, 'lawsker-deploy verify')"); err != nil {
			return Result{}, fmt.Errorf("INSERT: %w", err)
		}
		var note string
		if err := tx.QueryRow(ctx, "SELECT note FROM "+table+" WHERE id = 1").Scan(&note); err != nil || note != "lawsker-deploy verify" {
			return Result{}, fmt.Errorf("SELECT read back %q: %v", note, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			return Result{}, fmt.Errorf("ROLLBACK: %w", err)
		}
		var left bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&left); err != nil {
			return Result{}, err
		}
		if left {
			return Failed("table %s still exists after ROLLBACK", table), nil
		}
		return Passed("create, write, read and rollback in one transaction; nothing left behind"), nil
	}
}

// RouteReachesBackend GETs a backend route (an exact path, or a prefix
// itself) through nginx and fails when the frontend answered it: the same
// page as the frontend's / (its index.html, the SPA fallback). Any answer
// of the backend passes, whatever its status.
func RouteReachesBackend(h *HTTP, base, path string) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		index, err := h.Get(ctx, base+"/")
		if err != nil {
			return Result{}, err
		}
		resp, err := h.Get(ctx, base+path)
		if err != nil {
			return Result{}, err
		}
		if resp.Status == index.Status && bytes.Equal(resp.Body, index.Body) && strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			return Failed("GET %s was answered by the frontend's index.html, not the backend: nginx does not route it (backend.routes)", path), nil
		}
		return Passed("GET %s: status %d from the backend", path, resp.Status), nil
	}
}
