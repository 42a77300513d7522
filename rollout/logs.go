package rollout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/redact"
	"github.com/lawsker/lawsker-deploy/remote"
)

// LogsRequest is the `logs` verb of both front doors.
type LogsRequest struct {
	Config   *config.Config
	Resolver *config.Resolver
	// Release is "current" (the default), "previous", or a release id.
	Release string
	Since   time.Duration // only lines of the last Since (0: all kept)
	Grep    string        // only lines containing it
	Lines   int           // at most the newest Lines of each target (0: all)
	Follow  bool          // go on until ctx ends (an ended ctx is no error)
}

// LogLine is one line of a backend's output.
type LogLine struct {
	Target  string    `json:"target"`
	Release string    `json:"release"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// LogsFromDocker says where the lines come from while the targets run no
// log store: the backend containers' own output.
const LogsFromDocker = "the backend's output, read with docker logs over SSH (no log store runs on the targets: nginx's logs are not included)"

// Logs calls out with the release's lines on every target, oldest first
// on each, every configured secret masked, and returns where they came
// from. With Follow, lines of all targets arrive as they are written.
func Logs(ctx context.Context, req LogsRequest, out func(LogLine) error) (string, error) {
	cfg := req.Config
	// Every value a secret reference resolves to is masked, whatever the
	// app prints (a careless app prints its configuration).
	red := redact.New()
	res := *req.Resolver
	res.OnResolve = func(v string) { red.Add(v) }
	for _, u := range cfg.AllSecretRefs() {
		_, _ = res.Resolve(u.Ref)
	}
	var mu sync.Mutex
	emit := func(l LogLine) error {
		l.Message = red.String(l.Message)
		mu.Lock()
		defer mu.Unlock()
		return out(l)
	}
	errs := make([]error, len(cfg.Targets))
	var wg sync.WaitGroup
	for i, t := range cfg.Targets {
		run := func() { errs[i] = targetLogs(ctx, req, t, emit) }
		if !req.Follow {
			run() // one target after the other: each in order
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	if req.Follow && ctx.Err() != nil {
		return LogsFromDocker, nil
	}
	return LogsFromDocker, errors.Join(errs...)
}

func targetLogs(ctx context.Context, req LogsRequest, t config.Target, emit func(LogLine) error) error {
	e, err := deploy.Endpoint(t, req.Resolver)
	if err != nil {
		return fmt.Errorf("%s: %w", t.Name, err)
	}
	h, err := remote.Connect(ctx, e, 2)
	if err != nil {
		return err
	}
	defer h.Close()
	lay := deploy.NewLayout(req.Config, t)
	st, err := deploy.LoadState(h, lay)
	if err != nil {
		return fmt.Errorf("%s: reading its releases: %w", t.Name, err)
	}
	rel, err := pickRelease(st, req.Release)
	if err != nil {
		return fmt.Errorf("%s: %w", t.Name, err)
	}
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
		if emitErr = emit(LogLine{Target: t.Name, Release: rel.ID, Time: ts, Message: msg}); emitErr != nil {
			break
		}
	}
	pr.Close()
	err = <-done
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
