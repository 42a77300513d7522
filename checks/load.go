package checks

import (
	"bufio"
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
			c := &loadConn{addr: MapAddr(o.ConnectTo, addr), tls: u.Scheme == "https", tlsConfig: o.TLS, serverName: u.Hostname(), timeout: o.Timeout}
			defer c.close()
			buf := make([]byte, 32<<10)
			for ctx.Err() == nil {
				// The shared counter only when a request bound needs it:
				// workers bumping one atomic slow each other down.
				if o.Requests > 0 && sent.Add(1) > o.Requests {
					return
				}
				t0 := time.Now()
				err := c.roundTrip(ctx, request, buf)
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
	conn             net.Conn
	br               *bufio.Reader
}

func (c *loadConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *loadConn) roundTrip(ctx context.Context, request, buf []byte) error {
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if fresh {
			d := net.Dialer{Timeout: c.timeout}
			conn, err := d.DialContext(ctx, "tcp", c.addr)
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
		_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
		err := c.exchange(request, buf)
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

func (c *loadConn) exchange(request, buf []byte) error {
	if _, err := c.conn.Write(request); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	err = drain(resp.Body, buf)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.Close {
		c.close()
	}
	if resp.StatusCode >= 500 {
		return &statusError{resp.StatusCode}
	}
	return nil
}

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// drain reads a body to its end (at most MaxBody) with the worker's buffer.
func drain(body io.Reader, buf []byte) error {
	var total int
	for {
		n, err := body.Read(buf)
		total += n
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if total > MaxBody {
			return errBodyTooLarge
		}
	}
}

var errBodyTooLarge = errors.New("response body larger than 1 MiB")

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }
