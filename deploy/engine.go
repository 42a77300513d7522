package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/remote"
)

// engine asks the target's Docker engine API over the deploy's SSH
// connection (its unix socket forwarded, or its plain TCP address
// tunnelled): an inspect is one request, not a shell session (about 0.13 s
// each on the test target). It answers only what it can be sure of: a
// negative answer, or an engine it cannot reach (forwarding disabled,
// another socket in the user's DOCKER_HOST), sends the caller to the docker
// CLI, which stays the authority.
type engine struct {
	h  *remote.Host
	dk Docker
}

// errAskCLI says the API gave no sure answer: ask the docker CLI.
var errAskCLI = errors.New("ask the docker CLI")

func (e engine) dial(ctx context.Context) (net.Conn, error) {
	host := e.dk.Host
	switch {
	case host == "":
		return e.h.DialUnix(ctx, "/var/run/docker.sock")
	case strings.HasPrefix(host, "unix://"):
		return e.h.DialUnix(ctx, strings.TrimPrefix(host, "unix://"))
	case strings.HasPrefix(host, "tcp://") && !strings.HasSuffix(host, ":2376"): // 2376 is TLS
		return e.h.DialTCP(ctx, strings.TrimPrefix(host, "tcp://"))
	}
	return nil, errAskCLI
}

// call sends one request and decodes a 2xx JSON answer into
// v; any other outcome is errAskCLI.
func (e engine) call(ctx context.Context, method, p string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := e.dial(ctx)
	if err != nil {
		return errAskCLI
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+p, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return errAskCLI
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errAskCLI
	}
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v); err != nil {
		return errAskCLI
	}
	return nil
}

// hasImage is true when the engine holds the image; errAskCLI otherwise.
func (e engine) hasImage(ctx context.Context, ref string) error {
	var img struct{ ID string }
	if err := e.call(ctx, http.MethodGet, "/images/"+url.PathEscape(ref)+"/json", &img); err != nil || img.ID == "" {
		return errAskCLI
	}
	return nil
}

// containerState is what inspect says of a container.
type containerState struct {
	Running   bool
	Restarts  int
	ExitCode  int
	OOMKilled bool
}

func (e engine) container(ctx context.Context, name string) (containerState, error) {
	var c struct {
		State struct {
			Running   bool
			ExitCode  int
			OOMKilled bool
		}
		RestartCount int
	}
	if err := e.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", &c); err != nil {
		return containerState{}, err
	}
	return containerState{Running: c.State.Running, Restarts: c.RestartCount, ExitCode: c.State.ExitCode, OOMKilled: c.State.OOMKilled}, nil
}

// crash says what went wrong with a container that should run steadily
// ("" when it does).
func (st containerState) crash() string {
	switch {
	case st.OOMKilled:
		return "was killed for memory (OOM)"
	case !st.Running:
		return fmt.Sprintf("exited (code %d)", st.ExitCode)
	case st.Restarts > 0:
		return fmt.Sprintf("crashed and was restarted %d time(s) by Docker's restart policy", st.Restarts)
	}
	return ""
}

func (e engine) start(ctx context.Context, name string) error {
	return e.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(name)+"/start", nil)
}

// running reports (sure answers only) that a container runs and never
// restarted.
func (e engine) runningSteadily(ctx context.Context, name string) error {
	st, err := e.container(ctx, name)
	if err != nil || st.crash() != "" {
		return errAskCLI
	}
	return nil
}
