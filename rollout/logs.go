package rollout

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/logstore"
	"github.com/lawsker/lawsker-deploy/monitoring"
	"github.com/lawsker/lawsker-deploy/remote"
)

// LogsRequest is the `logs` verb of both front doors.
type LogsRequest struct {
	Config   *config.Config
	Resolver *config.Resolver
	// Release is "current" (the default), "previous", or a release id.
	Release string
	// Source is backend (the default: the release's output), access or
	// error (nginx's logs), or all; nginx's are only in the log store.
	Source string
	Since  time.Duration // only lines of the last Since (0: all kept)
	Grep   string        // only lines containing it
	Lines  int           // at most the newest Lines of each target (0: all)
	Follow bool          // go on until ctx ends (an ended ctx is no error)
}

// Log sources.
const (
	SourceBackend = "backend"
	SourceAccess  = "access"
	SourceError   = "error"
	SourceAll     = "all"
)

// LogLine is one line of a backend's output or of nginx's logs.
type LogLine struct {
	Target  string    `json:"target"`
	Release string    `json:"release"`
	Source  string    `json:"source"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// Where lines come from.
const (
	LogsFromStore = "the log store on the targets (monitoring.logs)"
	// LogsFromDocker: no log store is configured.
	LogsFromDocker = "the backend's output, read with docker logs over SSH (no log store is configured: monitoring.logs; nginx's logs are not included)"
)

// Logs calls out with the release's lines on every target, oldest first
// on each, every configured secret masked, and returns where they came
// from. With Follow, lines of all targets arrive as they are written.
func Logs(ctx context.Context, req LogsRequest, out func(LogLine) error) (string, error) {
	cfg := req.Config
	switch req.Source {
	case "":
		req.Source = SourceBackend
	case SourceBackend, SourceAccess, SourceError, SourceAll:
	default:
		return "", fmt.Errorf("--source %q: use backend, access, error or all", req.Source)
	}
	if req.Source != SourceBackend && !cfg.Monitoring.LogsOn() {
		return "", fmt.Errorf("--source %s: nginx's logs are only collected by the log store, and monitoring.logs is off in this configuration (monitoring.enabled and monitoring.logs.enabled)", req.Source)
	}
	// Every value a secret reference resolves to is masked, whatever the
	// app prints (a careless app prints its configuration).
	red := masker(cfg, req.Resolver)
	var mu sync.Mutex
	emit := func(l LogLine) error {
		l.Message = red.String(l.Message)
		mu.Lock()
		defer mu.Unlock()
		return out(l)
	}
	errs := make([]error, len(cfg.Targets))
	froms := make([]string, len(cfg.Targets))
	var wg sync.WaitGroup
	for i, t := range cfg.Targets {
		run := func() { froms[i], errs[i] = targetLogs(ctx, req, t, emit) }
		if !req.Follow {
			run() // one target after the other: each in order
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	from := describeFrom(cfg, froms)
	if req.Follow && ctx.Err() != nil {
		return red.String(from), nil
	}
	return red.String(from), errors.Join(errs...)
}

// describeFrom says where the lines came from: the store, or per target
// docker logs and why.
func describeFrom(cfg *config.Config, froms []string) string {
	if !cfg.Monitoring.LogsOn() {
		return LogsFromDocker
	}
	var fell []string
	for i, f := range froms {
		if f != "" && f != LogsFromStore {
			fell = append(fell, cfg.Targets[i].Name+": "+f)
		}
	}
	if len(fell) == 0 {
		return LogsFromStore
	}
	if len(fell) == len(froms) {
		return "the backend's output, read with docker logs over SSH: the log store does not answer on " + strings.Join(fell, "; ")
	}
	return LogsFromStore + "; docker logs instead on " + strings.Join(fell, "; ")
}

func targetLogs(ctx context.Context, req LogsRequest, t config.Target, emit func(LogLine) error) (string, error) {
	e, err := deploy.Endpoint(t, req.Resolver)
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.Name, err)
	}
	h, err := remote.Connect(ctx, e, 2)
	if err != nil {
		return "", err
	}
	defer h.Close()
	lay := deploy.NewLayout(req.Config, t)
	st, err := deploy.LoadState(h, lay)
	if err != nil {
		return "", fmt.Errorf("%s: reading its releases: %w", t.Name, err)
	}
	rel, err := pickRelease(st, req.Release)
	if err != nil && (req.Source == SourceBackend || req.Release != "" && req.Release != "current") {
		return "", fmt.Errorf("%s: %w", t.Name, err)
	}
	if !req.Config.Monitoring.LogsOn() {
		return LogsFromDocker, dockerLogs(ctx, req, h, t, lay, rel, emit)
	}
	s, err := monitoring.LogStoreFor(req.Config)
	if err != nil {
		return "", err
	}
	c := monitoring.StoreClient(h, s.Listen)
	if herr := c.Health(ctx); herr != nil {
		why := "the log store does not answer (" + herr.Error() + ")"
		if req.Source != SourceBackend {
			return why, fmt.Errorf("%s: nginx's logs are only in the log store, which does not answer: %w (monitoring apply, or the next deploy, starts it)", t.Name, herr)
		}
		return why, dockerLogs(ctx, req, h, t, lay, rel, emit)
	}
	_ = c.Flush(ctx)
	return LogsFromStore, storeLogs(ctx, req, c, t, lay, rel.ID, emit)
}

// storeLogs reads a target's lines from its log store.
func storeLogs(ctx context.Context, req LogsRequest, c *logstore.Client, t config.Target, lay deploy.Layout, release string, emit func(LogLine) error) error {
	tags := map[string]string{}
	if release != "" && (req.Source == SourceBackend || req.Source == SourceAll) {
		tags[monitoring.BackendTag(lay.Name, release)] = SourceBackend
	}
	if req.Source == SourceAccess || req.Source == SourceAll {
		tags[monitoring.AccessTag(lay.Name)] = SourceAccess
	}
	if req.Source == SourceError || req.Source == SourceAll {
		tags[monitoring.ErrorTag(lay.Name)] = SourceError
	}
	var alts []string
	for tag := range tags {
		alts = append(alts, "app_name:="+strconv.Quote(tag))
	}
	sort.Strings(alts)
	filter := "(" + strings.Join(alts, " OR ") + ")"
	if req.Source == SourceAccess && release != "" && req.Release != "" {
		// Only the access lines the release answered (their release field).
		filter += " _msg:~" + strconv.Quote(regexp.QuoteMeta(`"release":"`+release+`"`))
	}
	q := logstore.Query{Since: req.Since, Grep: req.Grep, Filter: filter, Limit: req.Lines}
	line := func(e logstore.Entry) error {
		src := tags[e.Fields["app_name"]]
		rel := release
		if src != SourceBackend {
			rel = accessRelease(e.Message)
		}
		return emit(LogLine{Target: t.Name, Release: rel, Source: src, Time: e.Time, Message: e.Message})
	}
	var err error
	if req.Follow {
		err = c.Tail(ctx, q, line)
	} else {
		err = c.Query(ctx, q, line)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", t.Name, err)
	}
	return nil
}

// accessRelease is the release field of an access line ("" for another line).
func accessRelease(msg string) string {
	_, rest, ok := strings.Cut(msg, `"release":"`)
	if !ok {
		return ""
	}
	rel, _, _ := strings.Cut(rest, `"`)
	return rel
}

// dockerLogs reads a release's output with docker logs over SSH.
func dockerLogs(ctx context.Context, req LogsRequest, h *remote.Host, t config.Target, lay deploy.Layout, rel deploy.Release, emit func(LogLine) error) error {
	name := rel.Container
	if name == "" {
		name = lay.Container(rel.ID)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := h.RunStream(ctx, nil, pw, deploy.Docker{Host: t.Docker.Host}.Output(name, req.Since, req.Lines, req.Follow)...)
		pw.CloseWithError(err)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var emitErr error
	for sc.Scan() {
		stamp, msg, _ := strings.Cut(sc.Text(), " ")
		ts, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil { // not docker's timestamp: the whole line is the message
			msg = sc.Text()
		}
		if req.Grep != "" && !strings.Contains(msg, req.Grep) {
			continue
		}
		if emitErr = emit(LogLine{Target: t.Name, Release: rel.ID, Source: SourceBackend, Time: ts, Message: msg}); emitErr != nil {
			break
		}
	}
	pr.Close()
	err := <-done
	switch {
	case emitErr != nil:
		return emitErr
	case req.Follow && ctx.Err() != nil:
		return nil
	case err != nil:
		var re *remote.RemoteError
		if errors.As(err, &re) && strings.Contains(re.Stderr, "No such container") {
			return fmt.Errorf("%s: release %s has no container any more (%s): its output is gone", t.Name, rel.ID, name)
		}
		return fmt.Errorf("%s: docker logs %s: %w", t.Name, name, err)
	}
	return nil
}

// pickRelease finds "current", "previous" or a release by id (or an
// unambiguous prefix of one).
func pickRelease(st *deploy.State, which string) (deploy.Release, error) {
	switch which {
	case "", "current":
		if r, ok := st.Current(); ok {
			return r, nil
		}
		return deploy.Release{}, errors.New("no release is current: nothing was deployed, or the first release was rolled back")
	case "previous":
		if r, ok := st.Previous(); ok {
			return r, nil
		}
		return deploy.Release{}, errors.New("there is no previous release (it is kept for backend.rollback_window after a deploy)")
	}
	var found []deploy.Release
	for _, r := range st.Releases {
		if r.ID == which {
			return r, nil
		}
		if strings.HasPrefix(r.ID, which) {
			found = append(found, r)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	ids := make([]string, 0, len(st.Releases))
	for _, r := range st.Releases {
		ids = append(ids, r.ID+" ("+r.Status+")")
	}
	if len(found) > 1 {
		return deploy.Release{}, fmt.Errorf("--release %s: %d releases start with it: %s", which, len(found), strings.Join(ids, ", "))
	}
	return deploy.Release{}, fmt.Errorf("--release %s: no such release; the releases are: %s (or current, previous)", which, strings.Join(ids, ", "))
}

// WriteLogJSON writes a line as one JSON object and a newline.
func WriteLogJSON(w io.Writer, l LogLine) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}
