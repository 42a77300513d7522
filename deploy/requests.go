package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OwnAgent starts the User-Agent of lawsker-deploy's own requests (checks,
// load, probes): the request tally counts them apart from clients'.
const OwnAgent = "lawsker-deploy"

// RequestCounts is what nginx served to the new release since its switch,
// read from the release's own access log (the site writes it for the
// release's first minutes: SiteData.WatchLog).
type RequestCounts struct {
	// Requests and Errors are clients' requests and those answered 5xx
	// (the backend's errors, and nginx's 502/503/504 for a backend that
	// does not answer); lawsker-deploy's own are Own.
	Requests int `json:"requests"`
	Errors   int `json:"errors"`
	Own      int `json:"own"`
	// LastError is the last 5xx of a client: "502 at 15:04:05.000".
	LastError string `json:"last_error,omitempty"`
	// Unread says why a target's log could not be read ("" when it was).
	Unread string `json:"unread,omitempty"`
}

// RequestTally follows the new release's access log on every target.
type RequestTally struct {
	mu     sync.Mutex
	counts RequestCounts
	done   chan struct{}
}

// Counts is the tally so far.
func (t *RequestTally) Counts() RequestCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

// Wait returns once every target's log was read a last time after ctx
// ended.
func (t *RequestTally) Wait() { <-t.done }

// TallyRequests reads each target's new release's access log from its
// first line, every interval, until ctx ends (then once more), over SFTP:
// nothing runs on the target.
func (d *Deployment) TallyRequests(ctx context.Context, interval time.Duration) *RequestTally {
	t := &RequestTally{done: make(chan struct{})}
	var wg sync.WaitGroup
	for _, tr := range d.targets {
		if tr.noop != "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &logFollower{path: tr.layout.AccessLog(d.req.ID), open: func(p string) (io.ReadSeekCloser, error) {
				c, err := tr.host.Files()
				if err != nil {
					return nil, err
				}
				return c.Open(p)
			}}
			for {
				err := f.read(t.add)
				if err != nil {
					t.mu.Lock()
					t.counts.Unread = fmt.Sprintf("%s: %v", tr.cfg.Name, err)
					t.mu.Unlock()
				}
				select {
				case <-ctx.Done():
					_ = f.read(t.add) // what was written before the end
					return
				case <-time.After(interval):
				}
			}
		}()
	}
	go func() { wg.Wait(); close(t.done) }()
	return t
}

// add counts one log line ($msec $status "$http_user_agent").
func (t *RequestTally) add(line string) {
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 {
		return
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return
	}
	agent := ""
	if len(f) == 3 {
		agent = strings.Trim(f[2], `"`)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if strings.HasPrefix(agent, OwnAgent) {
		t.counts.Own++
		return
	}
	t.counts.Requests++
	if status >= 500 {
		t.counts.Errors++
		when := f[0]
		if sec, err := strconv.ParseFloat(f[0], 64); err == nil {
			when = time.UnixMilli(int64(sec * 1000)).UTC().Format("15:04:05.000")
		}
		t.counts.LastError = fmt.Sprintf("%d at %s", status, when)
	}
}

// logFollower reads a growing file by offset, whole lines only.
type logFollower struct {
	path   string
	open   func(string) (io.ReadSeekCloser, error)
	offset int64
}

// read hands every complete line written since the last read to line. A
// file that does not exist yet has no lines.
func (f *logFollower) read(line func(string)) error {
	r, err := f.open(f.path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := r.Seek(f.offset, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(r, 8<<20))
	if err != nil {
		return err
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil
	}
	for _, l := range strings.Split(string(data[:end]), "\n") {
		line(l)
	}
	f.offset += int64(end + 1)
	return nil
}
