package checks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testBackend is a real HTTP server on loopback with the endpoints the
// checks meet in the field: healthy, lying (200 with an error body),
// failing, slow, huge, looping redirects, metrics for Prometheus, and a
// small frontend.
func testBackend(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok","version":"v1"}`)
	})
	mux.HandleFunc("/lying/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"error","error":"database unreachable"}`)
	})
	mux.HandleFunc("/malformed/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status": "ok", "db": `)
	})
	mux.HandleFunc("/failing", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(30 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, _ *http.Request) {
		chunk := strings.Repeat("x", 64<<10)
		for range 40 { // 2.5 MiB
			fmt.Fprint(w, chunk)
		}
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	const user, pass, token = "verify@lawsker.test", "correct horse battery", "tok-123"
	mux.HandleFunc("/api/v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		var u, p string
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			var body struct{ Username, Password string }
			_ = json.NewDecoder(r.Body).Decode(&body)
			u, p = body.Username, body.Password
		} else {
			u, p = r.FormValue("username"), r.FormValue("password")
		}
		if u != user || p != pass {
			http.Error(w, `{"detail":"Incorrect username or password"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer"}`, token)
	})
	authed := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token }
	mux.HandleFunc("/api/v1/users/me", func(w http.ResponseWriter, r *http.Request) {
		if !authed(r) {
			http.Error(w, `{"detail":"Not authenticated"}`, http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"id":1,"email":%q,"profile":{"role":"lawyer"}}`, user)
	})
	mux.HandleFunc("/api/v1/statistics", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"cases":3,"users":1}`) })
	mux.HandleFunc("/api/v1/upload", func(w http.ResponseWriter, r *http.Request) {
		if !authed(r) {
			http.Error(w, "auth", http.StatusUnauthorized)
			return
		}
		f, h, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.Close()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"filename":%q,"size":%d}`, h.Filename, h.Size)
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE http_requests_total counter\nhttp_requests_total 42\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/", "/index.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<!doctype html><script src="/assets/app.1234abcd.js"></script><link rel="stylesheet" href="/assets/app.css"><a href="https://elsewhere.example/x.js">`)
		case "/assets/app.1234abcd.js", "/assets/app.css":
			fmt.Fprint(w, "ok")
		case "/broken/":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<script src="/assets/missing.js"></script>`)
		default:
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
