package checks

import (
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
