package testenv

import (
	"context"
	"fmt"
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
