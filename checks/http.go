package checks

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// MaxBody bounds every response body read by a check.
const MaxBody = 1 << 20

// maxRedirects bounds redirect chains (a loop fails the check).
const maxRedirects = 5

// HTTP is the client checks use: bounded time, bounded redirects, bounded
// bodies, optional Host header.
type HTTP struct {
	Client *http.Client
	Host   string // Host header ("" keeps the URL's)
}

// NewHTTP returns a client with a per-request timeout; tlsConfig nil uses
// the system roots.
func NewHTTP(timeout time.Duration, tlsConfig *tls.Config) *HTTP {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	tr.MaxIdleConnsPerHost = 64
	return &HTTP{Client: &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects (last to %s): a redirect loop?", maxRedirects, req.URL)
			}
			return nil
		},
	}}
}

// ConnectTo sends connections for the map's host:port keys to their
// host:port values (like curl --connect-to); the URL's host stays the
// Host header and the TLS server name.
func (h *HTTP) ConnectTo(m map[string]string) { h.Connect(m, nil) }

// Connect sets how connections are made: the connect-to map first, then
// the route (nil: direct dials).
func (h *HTTP) Connect(m map[string]string, r *Route) {
	if len(m) == 0 && r == nil {
		return
	}
	tr := h.Client.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return r.DialContext(ctx, network, MapAddr(m, addr), 0)
	}
}

// MapAddr returns where a connection to addr goes under a connect-to map.
func MapAddr(m map[string]string, addr string) string {
	if to, ok := m[addr]; ok {
		return to
	}
	return addr
}

// Response is a bounded response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request and reads at most MaxBody of the answer; a larger body
// is an error (a check never reads without bound).
// UserAgent is the suite's own: nginx's log of a new release tells its
// requests from clients'.
const UserAgent = "lawsker-deploy-verify"

func (h *HTTP) Do(ctx context.Context, method, url string, body io.Reader, header http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the body: %w", method, url, err)
	}
	if len(data) > MaxBody {
		return nil, fmt.Errorf("%s %s: the response body is larger than %d bytes", method, url, MaxBody)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// Get is Do with GET and no body.
func (h *HTTP) Get(ctx context.Context, url string) (*Response, error) {
	return h.Do(ctx, http.MethodGet, url, nil, nil)
}

// jsonField reads a top-level string field of a JSON object body.
func jsonField(body []byte, field string) (string, bool, error) {
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return "", false, err
	}
	v, ok := obj[field]
	if !ok {
		return "", false, nil
	}
	s, _ := v.(string)
	return s, true, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
