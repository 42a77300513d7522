package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/testenv"
)

var ev = Event{Event: RollbackAuto, App: "lawsker", Environment: "production", DeploymentID: "20261126_040000_abcdef", Status: "failed",
	Trigger: "health_check", Reason: "3 consecutive failed health checks\r\nBcc: evil@example.com", Components: []string{"backend", "database"},
	Summary: map[string]int{"pass": 20, "fail": 1}, Report: "reports/deploy_20261126_040000_abcdef.json"}

func fast(n *Notifier) *Notifier { n.backoff = 10 * time.Millisecond; return n }

func TestWebhookDeliversWithBoundedRetries(t *testing.T) {
	var calls atomic.Int32
	var got Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		body, _ := io.ReadAll(r.Body)
		assert.NoError(t, json.Unmarshal(body, &got))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	n := fast(New(config.Notifications{WebhookURL: srv.URL + "/hooks/t0ken-in-path"}, nil))
	d := n.Send(t.Context(), ev)
	require.Len(t, d, 1)
	assert.Equal(t, Delivery{Channel: "webhook", OK: true, Attempts: 3}, d[0])
	assert.Equal(t, "health_check", got.Trigger)
	assert.Equal(t, []string{"backend", "database"}, got.Components)
	assert.Equal(t, 1, got.Summary["fail"])
	assert.False(t, got.Time.IsZero())
}

func TestWebhookFailuresAreReportedNotRaised(t *testing.T) {
	var calls atomic.Int32
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer refuse.Close()
	d := fast(New(config.Notifications{WebhookURL: refuse.URL + "/hooks/s3cret-token"}, nil)).Send(t.Context(), ev)
	assert.False(t, d[0].OK)
	assert.Equal(t, 1, d[0].Attempts, "a 404 is not retried")
	assert.Contains(t, d[0].Error, "404 Not Found (not retried: check notifications.webhook_url)")

	down := fmt.Sprintf("http://127.0.0.1:%d/hooks/s3cret-token", testenv.FreePort(t))
	d = fast(New(config.Notifications{WebhookURL: down}, nil)).Send(t.Context(), ev)
	assert.False(t, d[0].OK)
	assert.Equal(t, 3, d[0].Attempts)
	assert.Contains(t, d[0].Error, "connection refused")
	assert.NotContains(t, d[0].Error, "s3cret-token", "the URL's token stays out of errors")

	assert.Nil(t, New(config.Notifications{}, nil), "nothing configured: no notifier")
	assert.Nil(t, (*Notifier)(nil).Send(t.Context(), ev))
}

func TestEmailThroughSMTP(t *testing.T) {
	s := testenv.StartSMTP(t)
	cfg := config.Notifications{Email: "ops@lawsker.test", SMTP: &config.SMTP{Host: s.Host, Port: s.Port, From: "deploy@lawsker.test"}}
	d := New(cfg, &config.Resolver{}).Send(t.Context(), ev)
	require.Len(t, d, 1)
	assert.Equal(t, Delivery{Channel: "email", OK: true, Attempts: 1}, d[0])
	got := s.WaitMessage(t, 5*time.Second, "Subject: [lawsker-deploy] lawsker production: rollback.automatic (health_check)")
	assert.Contains(t, got, "To: ops@lawsker.test")
	assert.Contains(t, got, "Verification: 20 passed, 1 failed, 0 warnings, 0 skipped")
	assert.NotContains(t, got, "\nBcc: evil@example.com", "no header injection through a reason")

	cfg.SMTP.Port = testenv.FreePort(t)
	d = New(cfg, &config.Resolver{}).Send(t.Context(), ev)
	assert.False(t, d[0].OK)
	assert.Contains(t, d[0].Error, "notifications.smtp 127.0.0.1:")
}
