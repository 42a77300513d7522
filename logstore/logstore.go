package logstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DialFunc makes a connection (the target's SSH tunnel, or a direct dial).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Client talks to one VictoriaLogs.
type Client struct {
	URL  string // http://127.0.0.1:9428, as the dialler sees it
	http *http.Client
}

// New returns a client of the store at url; dial nil dials directly.
func New(url string, dial DialFunc) *Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, ResponseHeaderTimeout: 30 * time.Second}
	if dial != nil {
		tr.DialContext = dial
	}
	return &Client{URL: strings.TrimRight(url, "/"), http: &http.Client{Transport: tr}}
}

// Entry is one log line.
type Entry struct {
	Time    time.Time
	Message string
	Fields  map[string]string // release, source, status, ... (no _msg, _time, _stream)
}

// Query selects lines: all filters must hold.
type Query struct {
	Since  time.Duration     // only lines of the last Since (0: no bound)
	Fields map[string]string // exact values of fields (release, source)
	Grep   string            // text the message contains
	// Filter is more LogsQL, written by this program (never a user's
	// text): e.g. (i(error) OR i(panic)).
	Filter string
	Limit  int // the newest Limit lines (0: all)
}

// LogsQL is the query in VictoriaLogs' language; every value is quoted.
func (q Query) LogsQL() string {
	var parts []string
	if q.Since > 0 {
		parts = append(parts, "_time:"+duration(q.Since))
	}
	names := make([]string, 0, len(q.Fields))
	for k := range q.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		parts = append(parts, quoteField(k)+":="+strconv.Quote(q.Fields[k]))
	}
	if q.Grep != "" {
		// A substring, like grep: a regexp of the text, quoted.
		parts = append(parts, "_msg:~"+strconv.Quote(regexp.QuoteMeta(q.Grep)))
	}
	if q.Filter != "" {
		parts = append(parts, q.Filter)
	}
	if len(parts) == 0 {
		parts = append(parts, "*")
	}
	return strings.Join(parts, " ")
}

// duration writes d in LogsQL's units (whole seconds at least).
func duration(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(max(d/time.Second, 1)), 10) + "s"
}

// quoteField quotes a field name unless it is a plain word.
func quoteField(k string) string {
	for _, r := range k {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return strconv.Quote(k)
		}
	}
	return k
}

// Query calls fn with the matching lines, oldest first.
func (c *Client) Query(ctx context.Context, q Query, fn func(Entry) error) error {
	ql := q.LogsQL() + " | sort by (_time)"
	if q.Limit > 0 {
		ql = q.LogsQL() + " | sort by (_time desc) limit " + strconv.Itoa(q.Limit)
	}
	var entries []Entry // only with a limit: the newest, reversed
	err := c.stream(ctx, "/select/logsql/query", url.Values{"query": {ql}}, func(e Entry) error {
		if q.Limit > 0 {
			entries = append(entries, e)
			return nil
		}
		return fn(e)
	})
	if err != nil {
		return err
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if err := fn(entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// Tail calls fn with the matching lines as they arrive (those of the last
// q.Since first), until ctx ends; an ended ctx is no error.
func (c *Client) Tail(ctx context.Context, q Query, fn func(Entry) error) error {
	since := q.Since
	q.Since, q.Limit = 0, 0
	v := url.Values{"query": {q.LogsQL()}}
	if since > 0 {
		v.Set("start_offset", duration(since))
	}
	err := c.stream(ctx, "/select/logsql/tail", v, fn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Health says whether the store answers.
func (c *Client) Health(ctx context.Context) error {
	return c.get(ctx, "/health")
}

// Flush makes the lines received so far searchable at once (VictoriaLogs
// otherwise takes up to a second or so).
func (c *Client) Flush(ctx context.Context) error {
	return c.get(ctx, "/internal/force_flush")
}

func (c *Client) get(ctx context.Context, path string) error {
	return c.send(ctx, http.MethodGet, path, nil)
}

// send makes a request whose answer is only its status.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.down(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return c.refused(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// Ingest writes lines (JSON lines with app, release and source as the
// stream's fields).
func (c *Client) Ingest(ctx context.Context, entries []Entry) error {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, e := range entries {
		m := make(map[string]string, len(e.Fields)+2)
		for k, v := range e.Fields {
			m[k] = v
		}
		m["_msg"] = e.Message
		t := e.Time
		if t.IsZero() {
			t = time.Now()
		}
		m["_time"] = t.UTC().Format(time.RFC3339Nano)
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	v := url.Values{"_stream_fields": {"app,release,source"}}
	return c.send(ctx, http.MethodPost, "/insert/jsonline?"+v.Encode(), &body)
}

// stream POSTs a query and calls fn for each JSON line of the answer.
func (c *Client) stream(ctx context.Context, path string, v url.Values, fn func(Entry) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, strings.NewReader(v.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return c.down(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.refused(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		e, err := decode(line)
		if err != nil {
			return fmt.Errorf("log store at %s: an answer line is not a log entry: %w", c.URL, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("log store at %s: reading the answer: %w", c.URL, err)
	}
	return nil
}

func decode(line []byte) (Entry, error) {
	var m map[string]string
	if err := json.Unmarshal(line, &m); err != nil {
		return Entry{}, err
	}
	e := Entry{Message: m["_msg"], Fields: map[string]string{}}
	if t, err := time.Parse(time.RFC3339Nano, m["_time"]); err == nil {
		e.Time = t
	}
	for k, v := range m {
		if k != "_msg" && k != "_time" && k != "_stream" && k != "_stream_id" {
			e.Fields[k] = v
		}
	}
	return e, nil
}

// ErrDown is wrapped when the store does not answer.
var ErrDown = errors.New("log store does not answer")

func (c *Client) down(err error) error {
	return fmt.Errorf("%w at %s: %w", ErrDown, c.URL, err)
}

func (c *Client) refused(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("log store at %s answered %d: %s", c.URL, resp.StatusCode, strings.TrimSpace(string(b)))
}
