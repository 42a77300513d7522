package checks

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestAPIChecks(t *testing.T) {
	srv := testBackend(t)
	h := NewHTTP(2*time.Second, nil)
	for _, tc := range []struct {
		ep     Endpoint
		status Status
		msg    string
	}{
		{Endpoint{Path: "/api/v1/health", JSONFields: []string{"status", "version"}}, Pass, "GET /api/v1/health: status 200"},
		{Endpoint{Path: "/api/v1/users/me", Expect: []int{200, 401, 403}}, Pass, "GET /api/v1/users/me: status 401"},
		{Endpoint{Path: "/api/v1/statistics", JSONFields: []string{"cases", "profile.role"}}, Fail, "GET /api/v1/statistics: the JSON body lacks profile.role"},
		{Endpoint{Path: "/failing"}, Fail, `GET /failing: status 500, expected one of [200]: "boom"`},
		{Endpoint{Method: "POST", Path: "/api/v1/auth/login", Body: `{"username":"x","password":"y"}`, Expect: []int{401}}, Pass, "POST /api/v1/auth/login: status 401"},
		{Endpoint{Path: "/", JSONFields: []string{"a"}}, Fail, "but the body is not JSON"},
	} {
		r := run1(t, Check{Name: "api", Category: Functional, Run: API(h, srv.URL, tc.ep)})
		assert.Equal(t, tc.status, r.Status, r.Message)
		assert.Contains(t, r.Message, tc.msg)
	}
}

func TestAuthFlowAndUpload(t *testing.T) {
	srv := testBackend(t)
	h := NewHTTP(2*time.Second, nil)
	login := Login{Path: "/api/v1/auth/login", ProtectedPath: "/api/v1/users/me"}

	r := run1(t, Check{Name: "auth", Category: Functional, Run: AuthFlow(h, srv.URL, login, nil)})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Equal(t, "POST /api/v1/auth/login with wrong credentials: refused (401); valid login not checked: no credentials configured", r.Message)
	var none string
	r = run1(t, Check{Name: "upload", Category: Functional, Run: Upload(h, srv.URL, "/api/v1/upload", &none)})
	assert.Equal(t, Skip, r.Status)

	for _, form := range []bool{false, true} {
		var token string
		l := login
		l.Username, l.Password, l.Form = "verify@lawsker.test", "correct horse battery", form
		r = run1(t, Check{Name: "auth", Category: Functional, Run: AuthFlow(h, srv.URL, l, &token)})
		assert.Equal(t, Pass, r.Status, r.Message)
		assert.Equal(t, "tok-123", token)
		r = run1(t, Check{Name: "upload", Category: Functional, Run: Upload(h, srv.URL, "/api/v1/upload", &token)})
		assert.Equal(t, Pass, r.Status, r.Message)
		assert.Contains(t, r.Message, "status 201")
	}

	wrong := login
	wrong.Username, wrong.Password = "verify@lawsker.test", "not-the-password"
	r = run1(t, Check{Name: "auth", Category: Functional, Run: AuthFlow(h, srv.URL, wrong, nil)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "POST /api/v1/auth/login as verify@lawsker.test: status 401")
	assert.NotContains(t, r.Message, "not-the-password")

	open := Login{Path: "/api/v1/statistics"} // answers 200 to anything: no login at all
	r = run1(t, Check{Name: "auth", Category: Functional, Run: AuthFlow(h, srv.URL, open, nil)})
	assert.Equal(t, Fail, r.Status)
	assert.Contains(t, r.Message, "with wrong credentials: status 200, expected a refusal")
}

func TestDBTransaction(t *testing.T) {
	pg := testenv.StartPostgres(t)
	cfg, err := pgx.ParseConfig(pg.DSN("postgres"))
	require.NoError(t, err)
	r := run1(t, Check{Name: "db", Category: Functional, Run: DBTransaction(cfg)})
	assert.Equal(t, Pass, r.Status, r.Message)
	out := testenv.MustRun(t, testenv.Bin(t, "psql"), pg.DSN("postgres"), "-tAc", "SELECT count(*) FROM pg_class WHERE relname = 'lawsker_verify_probe'")
	assert.Equal(t, "0\n", out)
}

// A route nginx does not send to the backend is answered by the SPA's
// index.html: the route check says so; a backend's answer passes, whatever
// its status.
func TestRouteReachesBackend(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"no such store"}`)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>spa</title>")
	}))
	defer srv.Close()
	h := NewHTTP(2*time.Second, nil)
	r := run1(t, Check{Name: "route", Category: Functional, Run: RouteReachesBackend(h, srv.URL, "/v1/")})
	assert.Equal(t, Pass, r.Status, r.Message)
	assert.Equal(t, "GET /v1/: status 404 from the backend", r.Message)
	r = run1(t, Check{Name: "route", Category: Functional, Run: RouteReachesBackend(h, srv.URL, "/healthcheck")})
	assert.Equal(t, Fail, r.Status, r.Message)
	assert.Equal(t, "GET /healthcheck was answered by the frontend's index.html, not the backend: nginx does not route it (backend.routes)", r.Message)
}
