package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// `logs` without a log store: the release's output through docker logs,
// every secret masked, whatever the app prints.
func TestLogsShowAReleasesOutputWithSecretsMasked(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, "")
	// v1 is careless: it prints its database URL, password included.
	_, out, err := r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v1", "-X main.leakEnv=SAMPLE_DATABASE_URL"))
	require.NoError(t, err, "%+v", out)
	_, out, err = r.release(t, cfg, r.Image(t, "./examples/sample/backend", "sample/backend", "v2"))
	require.NoError(t, err, "%+v", out)

	read := func(req LogsRequest) ([]LogLine, string, error) {
		req.Config, req.Resolver = cfg, r.resolver()
		var lines []LogLine
		src, err := Logs(t.Context(), req, func(l LogLine) error { lines = append(lines, l); return nil })
		return lines, src, err
	}
	text := func(lines []LogLine) string {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l.Message + "\n")
		}
		return b.String()
	}
	cur, src, err := read(LogsRequest{})
	require.NoError(t, err)
	assert.Equal(t, LogsFromDocker, src)
	assert.Contains(t, text(cur), "sample backend v2 listening on")
	require.NotEmpty(t, cur)
	assert.Equal(t, "local", cur[0].Target)
	assert.False(t, cur[0].Time.IsZero(), "docker's timestamp is read")

	prev, _, err := read(LogsRequest{Release: "previous", Grep: "SAMPLE_DATABASE_URL"})
	require.NoError(t, err)
	require.Len(t, prev, 1, text(prev))
	assert.Contains(t, prev[0].Message, "config: SAMPLE_DATABASE_URL=postgres")
	assert.NotContains(t, prev[0].Message, r.pg.Password, "the password the careless app printed is masked")

	_, _, err = read(LogsRequest{Release: "nope"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--release nope: no such release; the releases are: ")

	// --follow ends with the user's Ctrl-C, as no error.
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := Logs(ctx, LogsRequest{Config: cfg, Resolver: r.resolver(), Follow: true}, func(LogLine) error {
			select {
			case got <- struct{}{}:
			default:
			}
			return nil
		})
		done <- err
	}()
	select {
	case <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the follow printed nothing")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the follow did not end with its context")
	}
}
