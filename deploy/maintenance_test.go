package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Maintenance mode under load: every answer is the release's or the
// maintenance page (503, Retry-After, the message escaped), the health
// path still answers from the release, a deploy is refused while it is on,
// and off puts the release back; no request fails otherwise.
func TestMaintenanceModeUnderLoad(t *testing.T) {
	r := newRig(t)
	cfg := r.config(t, `, "maintenance": {"retry_after": "45s"}`)
	run := r.deploy(t, cfg, r.image(t, "v1"), frontend(t, "v1"))
	require.NoError(t, run.res.Err())
	ctx := t.Context()
	h, err := connectTarget(ctx, r.sshd, mustRead(t, r.sshd.KeyPath))
	require.NoError(t, err)
	defer h.Close()
	tg := cfg.Primary()

	var mu sync.Mutex
	counts := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				kind := "error"
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/version", r.AppPort))
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "v1":
						kind = "release"
					case resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "45" && strings.Contains(string(body), "Back at 14:00 &lt;b&gt;"):
						kind = "maintenance"
					default:
						kind = fmt.Sprintf("other %d %q", resp.StatusCode, body)
					}
				}
				mu.Lock()
				counts[kind]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	m, err := MaintenanceOn(ctx, cfg, tg, h, "Back at 14:00 <b>", "ops@laptop")
	require.NoError(t, err)
	assert.True(t, m.On)
	time.Sleep(500 * time.Millisecond)
	code, body := r.get(t, "/api/v1/health")
	assert.Equal(t, http.StatusOK, code, "the health path is still the release's: %s", body)
	code, body = r.get(t, "/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "Under maintenance")
	st, err := ReadMaintenance(h, NewLayout(cfg, tg))
	require.NoError(t, err)
	assert.Equal(t, "ops@laptop", st.Who)

	refused := r.deploy(t, cfg, r.image(t, "v2"), frontend(t, "v2"))
	require.Error(t, refused.res.Err())
	assert.True(t, errors.Is(refused.res.Err(), ErrMaintenance), "%v", refused.res.Err())
	assert.Contains(t, refused.res.Err().Error(), "`lawsker-deploy maintenance off` first")

	_, err = MaintenanceOff(context.WithoutCancel(ctx), cfg, tg, h, "ops@laptop")
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	r.serves(t, "v1")
	st, err = ReadMaintenance(h, NewLayout(cfg, tg))
	require.NoError(t, err)
	assert.False(t, st.On)
	t.Logf("answers: %v", counts)
	assert.Greater(t, counts["release"], 0)
	assert.Greater(t, counts["maintenance"], 0)
	assert.Len(t, counts, 2, "only the release's answers and the maintenance page: %v", counts)
}
