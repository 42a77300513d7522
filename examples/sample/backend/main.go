// Command backend is the sample app lawsker-deploy's demo and tests deploy:
// a static binary with the endpoints a Lawsker-like backend has.
//
//	backend            serve on $PORT (default 8000)
//	backend worker     take jobs until stopped (what worker hosts run)
//	backend migrate    run "migrations": with SAMPLE_DATABASE_URL set, records
//	                   the version in alembic_version and creates table
//	                   release_<version>, as an Alembic migration would
//
// Build-time switches (-ldflags -X) make the broken releases tests need:
// main.version, main.healthy=false (health returns 500),
// main.healthyAnswers=N (health returns 500 after N answers),
// main.crashAfter=6s (serves, then exits with 1 six seconds after each
// start), main.failEvery=N (every Nth answer of /api/v1/version is a 500;
// health stays green), main.leakEnv=NAME (prints NAME's value when it
// starts, as a careless app does: logs must mask it), main.workerFails=true
// (backend worker exits at once), main.migrationFails=true (before any change), =halfway (after the
// schema changed) or =hangs (after the schema changed, forever).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	version        = "dev"
	healthy        = "true"
	migrationFails = "false"
	healthyAnswers = "0" // 0: no limit
	crashAfter     = ""  // a duration: the server exits with 1 that long after it starts
	failEvery      = "0" // N: every Nth /api/v1/version answer is a 500 (0: none)
	leakEnv        = ""  // an environment variable whose value is printed at start
	workerFails    = "false"
)

// worker is what a worker host runs: it takes jobs from a queue until it
// is stopped (a line a second); with main.workerFails=true it cannot
// reach its queue and exits.
func worker() {
	fmt.Println("worker", version, "started")
	if workerFails == "true" {
		time.Sleep(500 * time.Millisecond)
		fmt.Fprintln(os.Stderr, "ERROR worker: the queue is unreachable")
		os.Exit(1)
	}
	for n := 1; ; n++ {
		time.Sleep(time.Second)
		fmt.Println("worker", version, "processed job", n)
	}
}

// migrate does what an Alembic upgrade does to the schema: a new table and
// the version row.
func migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	table := pgx.Identifier{"release_" + strings.NewReplacer(".", "_", "-", "_").Replace(version)}.Sanitize()
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) PRIMARY KEY);
		CREATE TABLE IF NOT EXISTS `+table+` (id int);
		DELETE FROM alembic_version;
		INSERT INTO alembic_version VALUES ('`+strings.ReplaceAll(version, "'", "")+`')`)
	return err
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		worker()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		if migrationFails == "true" {
			fmt.Fprintln(os.Stderr, "migration 0042_add_cases failed: relation \"cases\" already exists")
			os.Exit(1)
		}
		if url := os.Getenv("SAMPLE_DATABASE_URL"); url != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := migrate(ctx, url); err != nil {
				fmt.Fprintln(os.Stderr, "migration failed:", err)
				os.Exit(1)
			}
		}
		switch migrationFails {
		case "halfway": // the schema changed, then a later step failed
			fmt.Fprintln(os.Stderr, "migration 0043_add_status failed half way: column \"status\" of relation \"cases\" already exists")
			os.Exit(1)
		case "hangs": // the schema changed, then it waits on a lock forever
			fmt.Fprintln(os.Stderr, "migration 0043_add_status: waiting for a lock on \"cases\"")
			select {}
		}
		fmt.Println("migrated to", version)
		return
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8000"
	}
	started := time.Now()
	if d, err := time.ParseDuration(crashAfter); err == nil && d > 0 {
		time.AfterFunc(d, func() {
			fmt.Fprintln(os.Stderr, "panic: runtime error: invalid memory address or nil pointer dereference (crashAfter)")
			os.Exit(1)
		})
	}
	mux := http.NewServeMux()
	limit, _ := strconv.Atoi(healthyAnswers)
	var answers atomic.Int64
	mux.HandleFunc("/api/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if healthy != "true" || (limit > 0 && answers.Add(1) > int64(limit)) {
			// What a real app prints when its database is away (with its
			// URL when it is careless: logs and reports must mask it).
			msg := "ERROR health: database unreachable"
			if leakEnv != "" {
				msg += " at " + os.Getenv(leakEnv)
			}
			fmt.Fprintln(os.Stderr, msg)
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(map[string]string{"status": "error", "version": version, "error": "database unreachable"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"status": "ok", "version": version, "uptime_s": int(time.Since(started).Seconds())})
	})
	every, _ := strconv.Atoi(failEvery)
	var versions atomic.Int64
	mux.HandleFunc("/api/v1/version", func(w http.ResponseWriter, _ *http.Request) {
		if every > 0 && versions.Add(1)%int64(every) == 0 {
			http.Error(w, "internal error (failEvery)", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, version)
	})
	// /api/v1/schema answers which code runs on which schema (the version
	// its database's alembic_version holds), from a pool as a real app
	// has: a database that goes away gives 500s.
	if url := os.Getenv("SAMPLE_DATABASE_URL"); url != "" {
		pool, err := pgxpool.New(context.Background(), url) // connects on first use
		if err != nil {
			fmt.Fprintln(os.Stderr, "SAMPLE_DATABASE_URL:", err)
			os.Exit(1)
		}
		mux.HandleFunc("/api/v1/schema", func(w http.ResponseWriter, r *http.Request) {
			var schema string
			if err := pool.QueryRow(r.Context(), "SELECT version_num FROM alembic_version").Scan(&schema); err != nil {
				http.Error(w, "database: "+err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"code": version, "schema": schema})
		})
	}
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
	// Lawsker's API surface, enough for the verification suite: a login for
	// the demo account (its password in SAMPLE_LOGIN_PASSWORD), endpoints
	// that need its token, and an upload.
	const demoUser = "demo@sample.test"
	// The token is the same in every instance of every release (like a JWT
	// signed with a shared key): during a switch two backends serve, and a
	// login on one must be good on the other.
	sum := sha256.Sum256([]byte("sample-token:" + os.Getenv("SAMPLE_LOGIN_PASSWORD")))
	token := "sample-token-" + hex.EncodeToString(sum[:12])
	mux.HandleFunc("/api/v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, `{"detail":"Method Not Allowed"}`, http.StatusMethodNotAllowed)
			return
		}
		var body struct{ Username, Password string }
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body)
		} else {
			body.Username, body.Password = r.FormValue("username"), r.FormValue("password")
		}
		want := os.Getenv("SAMPLE_LOGIN_PASSWORD")
		if want == "" || body.Username != demoUser || body.Password != want {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"detail":"Incorrect username or password"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"access_token": token, "token_type": "bearer"})
	})
	authed := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"detail":"Not authenticated"}`)
			return false
		}
		return true
	}
	mux.HandleFunc("/api/v1/users/me", func(w http.ResponseWriter, r *http.Request) {
		if authed(w, r) {
			json.NewEncoder(w).Encode(map[string]any{"id": 1, "email": demoUser})
		}
	})
	mux.HandleFunc("/api/v1/cases", func(w http.ResponseWriter, r *http.Request) {
		if authed(w, r) {
			json.NewEncoder(w).Encode([]map[string]any{{"id": 1, "title": "Sample v. Example"}})
		}
	})
	mux.HandleFunc("/api/v1/statistics", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]int{"cases": 1, "users": 1})
	})
	mux.HandleFunc("/api/v1/upload", func(w http.ResponseWriter, r *http.Request) {
		if !authed(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 10<<20)
		f, h, err := r.FormFile("file")
		if err != nil {
			http.Error(w, `{"detail":"a multipart file field is required"}`, http.StatusBadRequest)
			return
		}
		f.Close()
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"filename": h.Filename, "size": h.Size})
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE sample_up gauge\nsample_up{version=%q} 1\n", version)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if leakEnv != "" {
		fmt.Println("config:", leakEnv+"="+os.Getenv(leakEnv))
	}
	fmt.Println("sample backend", version, "listening on", srv.Addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
