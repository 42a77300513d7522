package monitoring

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/logstore"
	"github.com/lawsker/lawsker-deploy/remote"
)

// LogStore is the VictoriaLogs of a deployment on one target: its
// settings, as the monitoring folder keeps them (snapshots carry them).
type LogStore struct {
	Image      string `json:"image"`
	Listen     string `json:"listen"`      // 127.0.0.1:9428: the HTTP API
	SyslogPort int    `json:"syslog_port"` // UDP on 127.0.0.1
	Retention  string `json:"retention"`   // VictoriaLogs' -retentionPeriod (e.g. 7d, 36h)
}

// LogStoreFor is the store the configuration asks for.
func LogStoreFor(cfg *config.Config) (LogStore, error) {
	lg := cfg.Monitoring.Logs
	u, err := url.Parse(lg.URL)
	if err != nil || u.Hostname() == "" {
		return LogStore{}, fmt.Errorf("monitoring.logs.url %q is not a URL", lg.URL)
	}
	port := u.Port()
	if port == "" {
		port = "9428"
	}
	return LogStore{Image: lg.Image, Listen: net.JoinHostPort(u.Hostname(), port), SyslogPort: lg.SyslogPort, Retention: retention(lg.Retention.D())}, nil
}

// retention writes d in VictoriaLogs' units (whole hours, days when exact).
func retention(d time.Duration) string {
	h := int64(d / time.Hour)
	if h < 24 {
		h = 24
	}
	if h%24 == 0 {
		return strconv.FormatInt(h/24, 10) + "d"
	}
	return strconv.FormatInt(h, 10) + "h"
}

// hash names the settings on the container (a label): a store that runs
// with the same ones is left alone.
func (s LogStore) hash() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// LogStoreDir is the folder of the store's settings inside the monitoring
// folder; LogStoreSettings the file.
func LogStoreSettings(base string) string {
	return path.Join(Dir(base), "logs", "victoria-logs.json")
}

// LogStoreData is where the store keeps its lines on the target.
func LogStoreData(base string) string { return path.Join(base, "logstore") }

// LogStoreState says what EnsureLogStore found or did.
const (
	LogStoreRunning   = "running" // with the same settings: left alone
	LogStoreStarted   = "started"
	LogStoreRestarted = "restarted" // with new settings
)

// EnsureLogStore writes the settings into the monitoring folder and runs
// the store as a container on the target (network host, listening on
// loopback only, its lines under <base>/logstore), unless it already runs
// with the same settings; it returns once the store answers.
func EnsureLogStore(ctx context.Context, t Target, s LogStore) (string, error) {
	settings, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	if err := t.Host.MkdirAll(path.Dir(LogStoreSettings(t.Base))); err != nil {
		return "", err
	}
	if err := t.Host.WriteFile(LogStoreSettings(t.Base), append(settings, '\n'), 0o644); err != nil {
		return "", err
	}
	name := ContainerName(t, "logs")
	out, _ := t.Host.Run(ctx, t.Docker.Cmd("inspect", "--format", `{{.State.Running}} {{index .Config.Labels "lawsker.settings"}}`, name)...)
	state := LogStoreStarted
	switch f := strings.Fields(out); {
	case len(f) == 2 && f[0] == "true" && f[1] == s.hash():
		return LogStoreRunning, waitStore(ctx, t, name, s.Listen)
	case len(f) > 0:
		state = LogStoreRestarted
	}
	data := LogStoreData(t.Base)
	if err := t.Host.MkdirAll(data); err != nil {
		return "", err
	}
	_, _ = t.Host.Run(ctx, t.Docker.Cmd("rm", "-f", name)...)
	args := t.Docker.Cmd("run", "-d", "--name", name, "--restart", "unless-stopped", "--network", "host",
		"--label", "lawsker.app="+t.App, "--label", "lawsker.base="+t.Base, "--label", "lawsker.role=logs", "--label", "lawsker.settings="+s.hash(),
		"-v", data+":/vlogs", s.Image,
		"-httpListenAddr="+s.Listen, "-storageDataPath=/vlogs", "-retentionPeriod="+s.Retention,
		"-syslog.listenAddr.udp="+net.JoinHostPort("127.0.0.1", strconv.Itoa(s.SyslogPort)), "-loggerLevel=WARN")
	if _, err := t.Host.Run(ctx, args...); err != nil {
		return "", fmt.Errorf("starting the log store (%s): %w", s.Image, err)
	}
	return state, waitStore(ctx, t, name, s.Listen)
}

// RestoreLogStore runs the store with the settings the monitoring folder
// holds (after a rollback restored it); no settings file: nothing to do.
func RestoreLogStore(ctx context.Context, t Target) (string, error) {
	fs, err := t.Host.Files()
	if err != nil {
		return "", err
	}
	f, err := fs.Open(LogStoreSettings(t.Base))
	if err != nil {
		return "", nil //nolint:nilerr // the snapshot was taken without log collection
	}
	defer f.Close()
	var s LogStore
	if err := json.NewDecoder(f).Decode(&s); err != nil || s.Image == "" || s.Listen == "" || s.SyslogPort == 0 {
		return "", fmt.Errorf("%s: not the settings of a log store (%v)", LogStoreSettings(t.Base), err)
	}
	return EnsureLogStore(ctx, t, s)
}

// waitStore waits until the store answers /health through the target;
// a container that exits or restarts meanwhile ends the wait at once,
// with its last lines.
func waitStore(ctx context.Context, t Target, name, listen string) error {
	c := StoreClient(t.Host, listen)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		if last = c.Health(ctx); last == nil {
			return nil
		}
		out, err := t.Host.Run(ctx, t.Docker.Cmd("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", name)...)
		if f := strings.Fields(out); err == nil && len(f) == 2 && (f[0] != "true" || f[1] != "0") {
			logs, _ := t.Host.Run(ctx, "sh", "-c", remote.Quote(t.Docker.Cmd("logs", "--tail", "3", name)...)+" 2>&1")
			return fmt.Errorf("the log store container %s does not stay up (running, restarts: %s): %s", name, strings.TrimSpace(out), lastLines(logs))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the log store on %s does not answer: %w", listen, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StoreClient is a client of a target's store, through its SSH connection.
func StoreClient(h *remote.Host, listen string) *logstore.Client {
	return logstore.New("http://"+listen, func(ctx context.Context, _, addr string) (net.Conn, error) { return h.DialTCP(ctx, addr) })
}

// LogTag is a deployment's tag in the store (nginx's syslog tags are at
// most 32 letters, digits and underscores): lk_ and a hash of its name.
func LogTag(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "lk_" + hex.EncodeToString(sum[:5])
}

// BackendTag is the tag of a release's backend output.
func BackendTag(name, release string) string { return LogTag(name) + "." + release }

// AccessTag and ErrorTag are the tags of nginx's access and error logs.
func AccessTag(name string) string { return LogTag(name) + "_access" }

// ErrorTag is nginx's error log's tag.
func ErrorTag(name string) string { return LogTag(name) + "_error" }

// BackendLogOptions are the docker run options that send a backend's
// output to the store: Docker's syslog driver over UDP, non-blocking (a
// store that is down never stalls the app; Docker keeps its own copy, so
// docker logs still works).
func BackendLogOptions(cfg *config.Config, name, release string) []string {
	if !cfg.Monitoring.LogsOn() {
		return nil
	}
	return []string{"--log-driver", "syslog",
		"--log-opt", "syslog-address=udp://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Monitoring.Logs.SyslogPort)),
		"--log-opt", "syslog-format=rfc5424micro", "--log-opt", "tag=" + BackendTag(name, release),
		"--log-opt", "mode=non-blocking", "--log-opt", "max-buffer-size=4m"}
}

// ErrorWords make a line an error line, as whole words in any case.
var ErrorWords = []string{"error", "panic", "fatal", "critical", "exception", "traceback"}

var errorWordRE = regexp.MustCompile(`(?i)\b(` + strings.Join(ErrorWords, "|") + `)\b`)

// IsErrorLine says whether a line has one of ErrorWords.
func IsErrorLine(s string) bool { return errorWordRE.MatchString(s) }

// ErrorLinesLogsQL is the LogsQL filter of error lines (the Grafana panel's
// and the report's).
func ErrorLinesLogsQL() string {
	parts := make([]string, len(ErrorWords))
	for i, w := range ErrorWords {
		parts[i] = "i(" + w + ")"
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// ErrorLine is one distinct error line of a release, with how often it came.
type ErrorLine struct {
	Target string    `json:"target"`
	Line   string    `json:"line"`
	Count  int       `json:"count"`
	Last   time.Time `json:"last"`
}

// ReadErrorLines reads a release's distinct error lines on a target since
// from (a flush first, so lines of a moment ago are there), in the order
// they first came, the most frequent kept when there are more than max.
func ReadErrorLines(ctx context.Context, c *logstore.Client, target, name, release string, from time.Time, max int) ([]ErrorLine, error) {
	_ = c.Flush(ctx)
	q := logstore.Query{Since: time.Since(from) + 5*time.Second, Fields: map[string]string{"app_name": BackendTag(name, release)}, Filter: ErrorLinesLogsQL(), Limit: 5000}
	var out []ErrorLine
	at := map[string]int{}
	err := c.Query(ctx, q, func(e logstore.Entry) error {
		if !IsErrorLine(e.Message) { // the store's words are looser than ours
			return nil
		}
		if i, ok := at[e.Message]; ok {
			out[i].Count++
			out[i].Last = e.Time
			return nil
		}
		at[e.Message] = len(out)
		out = append(out, ErrorLine{Target: target, Line: e.Message, Count: 1, Last: e.Time})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) > max && max > 0 {
		// Keep the most frequent, in their first order.
		counts := make([]int, len(out))
		for i, l := range out {
			counts[i] = l.Count
		}
		keep := map[int]bool{}
		for len(keep) < max {
			best := -1
			for i, n := range counts {
				if !keep[i] && (best < 0 || n > counts[best]) {
					best = i
				}
			}
			keep[best] = true
		}
		var kept []ErrorLine
		for i, l := range out {
			if keep[i] {
				kept = append(kept, l)
			}
		}
		out = kept
	}
	return out, nil
}

// lastLines is s on one line.
func lastLines(s string) string {
	return strings.Join(strings.Fields(strings.TrimSpace(s)), " ")
}
