// Command backend is the sample app lawsker-deploy's demo and tests deploy:
// a static binary with the endpoints a Lawsker-like backend has.
//
//	backend            serve on $PORT (default 8000)
//	backend migrate    run "migrations" (prints what it did)
//
// Build-time switches (-ldflags -X) make the broken releases tests need:
// main.version, main.healthy=false (health returns 500), main.migrationFails=true.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

var (
	version        = "dev"
	healthy        = "true"
	migrationFails = "false"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		if migrationFails == "true" {
			fmt.Fprintln(os.Stderr, "migration 0042_add_cases failed: relation \"cases\" already exists")
			os.Exit(1)
		}
		fmt.Println("migrated to", version)
		return
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8000"
	}
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if healthy != "true" {
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(map[string]string{"status": "error", "version": version, "error": "database unreachable"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"status": "ok", "version": version, "uptime_s": int(time.Since(started).Seconds())})
	})
	mux.HandleFunc("/api/v1/version", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, version) })
	// /api/v1/env?name=X echoes a configured variable (tests check env files
	// carry values verbatim); only names starting with SAMPLE_ are shown.
	mux.HandleFunc("/api/v1/env", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if len(name) < 7 || name[:7] != "SAMPLE_" {
			http.Error(w, "only SAMPLE_ variables", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, os.Getenv(name))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Println("sample backend", version, "listening on", srv.Addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
