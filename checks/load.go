package checks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// LoadResult is what a load run measured.
type LoadResult struct {
	Requests  uint64        `json:"requests"`
	Errors    uint64        `json:"errors"` // transport errors and statuses >= 500
	Duration  time.Duration `json:"-"`
	PerSecond float64       `json:"requests_per_second"`
	ErrorRate float64       `json:"error_rate"`
	P50       time.Duration `json:"-"`
	P95       time.Duration `json:"-"`
	P99       time.Duration `json:"-"`
	Max       time.Duration `json:"-"`
	Latency   *Histogram    `json:"-"`
	// FirstError is the first failure seen, for the message.
	FirstError string `json:"first_error,omitempty"`
}

// LoadOptions shape a load run: Concurrency workers sending requests back
// to back on their own keep-alive connection until Duration passes or
// Requests have been sent (0: no limit; at least one bound is required).
type LoadOptions struct {
	Concurrency int
	Duration    time.Duration
	Requests    uint64
	Host        string        // Host header (default: the URL's)
	Timeout     time.Duration // one request, connecting included (default 10 s)
	TLS         *tls.Config   // for https URLs (nil: system roots)
	// ConnectTo maps host:port to the address connected to (Host header
	// and TLS name stay the URL's).
	ConnectTo map[string]string
	// Route reaches some hosts through a target (nil: direct dials).
	Route *Route
}

// Load sends GET url from Concurrency workers. Each worker owns one
// connection (reconnecting when the server closes it), writes the request
// itself and parses the answer with http.ReadResponse: no goroutine
// hand-offs per request, which is what makes Go's http.Client slow as a
// load generator. Memory is fixed: a histogram per worker, merged at the
// end; bodies are read into a reused buffer and dropped.
func Load(ctx context.Context, target string, o LoadOptions) *LoadResult {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.Duration <= 0 && o.Requests == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	r := &LoadResult{Latency: &Histogram{}}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		r.FirstError = fmt.Sprintf("load: %q is not an http(s) URL", target)
		return r
	}
	host := o.Host
	if host == "" {
		host = u.Host
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	request := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: " + UserAgent + "\r\nAccept: */*\r\n\r\n")
	var sent, errs atomic.Uint64
	var firstErr atomic.Value
	hists := make([]*Histogram, o.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.Concurrency {
		hists[w] = &Histogram{}
		wg.Add(1)
		go func(h *Histogram) {
			defer wg.Done()
			c := &loadConn{addr: MapAddr(o.ConnectTo, addr), tls: u.Scheme == "https", tlsConfig: o.TLS, serverName: u.Hostname(), timeout: o.Timeout, route: o.Route}
			defer c.close()
			for ctx.Err() == nil {
				// The shared counter only when a request bound needs it:
				// workers bumping one atomic slow each other down.
				if o.Requests > 0 && sent.Add(1) > o.Requests {
					return
				}
				t0 := time.Now()
				err := c.roundTrip(ctx, request)
				if ctx.Err() != nil && err != nil {
					return // the deadline cut this one: not counted
				}
				h.Record(time.Since(t0))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}(hists[w])
	}
	wg.Wait()
	r.Duration = time.Since(start)
	for _, h := range hists {
		r.Latency.Merge(h)
	}
	r.Requests, r.Errors = r.Latency.Count(), errs.Load()
	if r.Duration > 0 {
		r.PerSecond = float64(r.Requests) / r.Duration.Seconds()
	}
	if r.Requests > 0 {
		r.ErrorRate = float64(r.Errors) / float64(r.Requests)
	}
	r.P50, r.P95, r.P99, r.Max = r.Latency.Percentile(50), r.Latency.Percentile(95), r.Latency.Percentile(99), r.Latency.Max()
	if v, ok := firstErr.Load().(string); ok {
		r.FirstError = v
	}
	return r
}

// loadConn is one worker's keep-alive connection.
type loadConn struct {
	addr, serverName string
	tls              bool
	tlsConfig        *tls.Config
	timeout          time.Duration
	route            *Route
	conn             net.Conn
	br               *bufio.Reader
	renew            time.Time // when the deadline moves next
}

func (c *loadConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *loadConn) roundTrip(ctx context.Context, request []byte) error {
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if fresh {
			conn, err := c.route.DialContext(ctx, "tcp", c.addr, c.timeout)
			if err != nil {
				return err
			}
			if c.tls {
				cfg := c.tlsConfig.Clone()
				if cfg == nil {
					cfg = &tls.Config{}
				}
				if cfg.ServerName == "" {
					cfg.ServerName = c.serverName
				}
				conn = tls.Client(conn, cfg)
			}
			c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
		}
		// The deadline moves a quarter of the timeout at a time, not per
		// request: one timer change per request costs throughput, and a
		// stuck request still fails within the timeout and a quarter.
		if now := time.Now(); fresh || now.After(c.renew) {
			_ = c.conn.SetDeadline(now.Add(c.timeout + c.timeout/4))
			c.renew = now.Add(c.timeout / 4)
		}
		err := c.exchange(request)
		if err == nil {
			return nil
		}
		c.close()
		// A kept-alive connection the server closed meanwhile: once more on
		// a fresh one (what every HTTP client does).
		if fresh || attempt > 0 || !isClosedConn(err) {
			return err
		}
	}
}

func (c *loadConn) exchange(request []byte) error {
	if _, err := c.conn.Write(request); err != nil {
		return err
	}
	status, closeConn, err := readResponse(c.br)
	if err != nil {
		return err
	}
	if closeConn {
		c.close()
	}
	if status >= 500 {
		return &statusError{status}
	}
	return nil
}

// readResponse reads one HTTP/1.x response to its end and says its status
// and whether the server closes the connection after it. It reads what a
// load test needs and nothing more (status, Content-Length,
// Transfer-Encoding, Connection), and allocates nothing per response:
// net/http's ReadResponse (a header map, a Response) was most of the
// generator's work per request.
func readResponse(br *bufio.Reader) (int, bool, error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return 0, false, err
		}
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, false, fmt.Errorf("malformed HTTP status line %q", truncate(line))
		}
		status := 0
		for _, d := range line[9:12] {
			if d < '0' || d > '9' {
				return 0, false, fmt.Errorf("malformed HTTP status line %q", truncate(line))
			}
			status = status*10 + int(d-'0')
		}
		closeConn := line[7] == '0' // HTTP/1.0 closes unless it says keep-alive
		length, chunked := int64(-1), false
		for {
			h, err := readLine(br)
			if err != nil {
				return 0, false, err
			}
			if len(h) == 0 {
				break
			}
			name, value, ok := bytes.Cut(h, []byte(":"))
			if !ok {
				return 0, false, fmt.Errorf("malformed HTTP header %q", truncate(h))
			}
			name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				n, err := parseUint(value, 10)
				if err != nil {
					return 0, false, fmt.Errorf("malformed Content-Length %q", truncate(value))
				}
				length = n
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
			case bytes.EqualFold(name, []byte("Connection")):
				if bytes.EqualFold(value, []byte("close")) {
					closeConn = true
				} else if bytes.EqualFold(value, []byte("keep-alive")) {
					closeConn = false
				}
			}
		}
		switch {
		case status >= 100 && status < 200:
			continue // an interim answer; the real one follows
		case status == http.StatusNoContent || status == http.StatusNotModified:
			return status, closeConn, nil
		case chunked:
			return status, closeConn, discardChunked(br)
		case length >= 0:
			if length > MaxBody {
				return 0, false, errBodyTooLarge
			}
			_, err := br.Discard(int(length))
			return status, closeConn, err
		}
		// No length: the body ends with the connection.
		n, err := br.WriteTo(io.Discard)
		if err == nil && n > MaxBody {
			err = errBodyTooLarge
		}
		return status, true, err
	}
}

// discardChunked reads a chunked body and its trailer.
func discardChunked(br *bufio.Reader) error {
	var total int64
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := parseUint(bytes.TrimSpace(size), 16)
		if err != nil {
			return fmt.Errorf("malformed chunk size %q", truncate(line))
		}
		if n == 0 {
			for { // the trailer, to its empty line
				t, err := readLine(br)
				if err != nil || len(t) == 0 {
					return err
				}
			}
		}
		if total += n; total > MaxBody {
			return errBodyTooLarge
		}
		if _, err := br.Discard(int(n)); err != nil {
			return err
		}
		if end, err := readLine(br); err != nil || len(end) != 0 {
			if err == nil {
				err = fmt.Errorf("malformed chunk end %q", truncate(end))
			}
			return err
		}
	}
}

// readLine is the next line without its CRLF (or LF); a line longer than
// the reader's buffer is an error.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("an HTTP header line longer than 16 KiB")
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseUint reads a non-negative number in base 10 or 16 (at most 15
// digits: a body size).
func parseUint(b []byte, base int64) (int64, error) {
	if len(b) == 0 || len(b) > 15 {
		return 0, errors.New("not a size")
	}
	var n int64
	for _, c := range b {
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return 0, errors.New("not a size")
		}
		n = n*base + d
	}
	return n, nil
}

func truncate(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

var errBodyTooLarge = errors.New("response body larger than 1 MiB")

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }
