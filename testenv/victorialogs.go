package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// VictoriaLogs is the log store (github.com/VictoriaMetrics/VictoriaLogs,
// Apache-2.0, built by scripts/setup-testenv.sh) on a free loopback port,
// with a syslog UDP listener beside its HTTP API.
type VictoriaLogs struct {
	URL        string // http://127.0.0.1:PORT
	SyslogUDP  string // 127.0.0.1:PORT for syslog (RFC 3164/5424) over UDP
	StorageDir string
	proc       *Process
}

// StartVictoriaLogs starts VictoriaLogs with a throwaway storage folder.
func StartVictoriaLogs(t testing.TB) *VictoriaLogs {
	t.Helper()
	dir := TempDir(t, "victoria-logs")
	port, syslog := FreePort(t), FreePort(t)
	v := &VictoriaLogs{URL: fmt.Sprintf("http://127.0.0.1:%d", port), SyslogUDP: fmt.Sprintf("127.0.0.1:%d", syslog), StorageDir: filepath.Join(dir, "data")}
	v.proc = Start(t, "victoria-logs", exec.Command(Bin(t, "victoria-logs"),
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port), "-storageDataPath="+v.StorageDir,
		"-syslog.listenAddr.udp="+v.SyslogUDP, "-retentionPeriod=7d", "-loggerLevel=WARN"))
	v.proc.WaitFor(t, 30*time.Second, "ready", func(ctx context.Context) error {
		return httpStatus(ctx, http.DefaultClient, v.URL+"/health", http.StatusOK)
	})
	return v
}

// Stop ends the store (a test of a store that is down).
func (v *VictoriaLogs) Stop() { v.proc.Stop() }

// SendSyslog sends one RFC 5424 line over UDP to addr, tagged app (what
// Docker's syslog driver and nginx's syslog: target send).
func SendSyslog(t testing.TB, addr, app, msg string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer c.Close()
	line := fmt.Sprintf("<14>1 %s testhost %s - - - %s", time.Now().UTC().Format(time.RFC3339Nano), app, msg)
	if _, err := c.Write([]byte(line)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
