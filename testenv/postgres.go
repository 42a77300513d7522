package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Postgres is a throwaway PostgreSQL cluster.
type Postgres struct {
	Host     string
	Port     int
	User     string // superuser
	Password string
	Dir      string // data folder
	proc     *Process
}

// DSN returns a connection URL for the database.
func (p *Postgres) DSN(database string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", p.User, p.Password, net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), database)
}

// asPostgresUser runs server binaries as the postgres user when the test
// runs as root (PostgreSQL refuses to run as root).
func asPostgresUser(t testing.TB, bin string, args ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		return exec.Command(bin, args...)
	}
	return exec.Command(Bin(t, "runuser"), append([]string{"-u", "postgres", "--", bin}, args...)...)
}

func chownToPostgres(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("testenv: PostgreSQL runs as user postgres, which is missing (run scripts/setup-testenv.sh): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Log is the server's output: its log, including every DDL statement
// (log_statement=ddl), so tests can check what reached the server.
func (p *Postgres) Log() string { return p.proc.log.String() }

// StartPostgres initialises a cluster with password authentication on a
// free loopback port and starts it.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	initdb := Bin(t, "initdb")
	root := TempDir(t, "pg")
	data := filepath.Join(root, "data")
	sock := filepath.Join(root, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		chownToPostgres(t, d)
	}
	pg := &Postgres{Host: "127.0.0.1", Port: FreePort(t), User: "postgres", Password: "pg-test-" + strconv.FormatInt(time.Now().UnixNano(), 36), Dir: data}
	pwfile := filepath.Join(root, "pwfile")
	if err := os.WriteFile(pwfile, []byte(pg.Password+"\n"), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cmd := asPostgresUser(t, initdb, "-D", data, "-U", pg.User, "--pwfile", pwfile, "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	pg.proc = Start(t, "postgres", asPostgresUser(t, Bin(t, "postgres"), "-D", data, "-p", strconv.Itoa(pg.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+sock, "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=50", "-c", "log_statement=ddl"))
	pg.proc.WaitFor(t, 30*time.Second, "accepting connections", func(ctx context.Context) error {
		out, err := Run(ctx, Bin(t, "pg_isready"), "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.User)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return pg
}
