// Package notify sends deploy and rollback events: a JSON POST to the
// configured webhook (bounded retries) and an email through the configured
// SMTP server. A notification that cannot be delivered is reported, never
// allowed to fail the deploy it reports on.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
)

// Event kinds.
const (
	DeploySucceeded = "deploy.succeeded"
	DeployFailed    = "deploy.failed"
	RollbackAuto    = "rollback.automatic"
	RollbackManual  = "rollback.manual"
)

// Event is what a webhook receives (as JSON) and an email tells.
type Event struct {
	Event        string         `json:"event"`
	App          string         `json:"app"`
	Environment  string         `json:"environment"`
	DeploymentID string         `json:"deployment_id"`
	Status       string         `json:"status"`
	Time         time.Time      `json:"time"`
	Trigger      string         `json:"trigger,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	Components   []string       `json:"components,omitempty"`
	Release      string         `json:"release,omitempty"`
	Image        string         `json:"image,omitempty"`
	Snapshot     string         `json:"snapshot,omitempty"`
	Summary      map[string]int `json:"summary,omitempty"` // verification: pass, fail, warn, skip
	Report       string         `json:"report,omitempty"`
	Who          string         `json:"who,omitempty"`
}

// Notifier delivers events to what notifications configures.
type Notifier struct {
	cfg      config.Notifications
	res      *config.Resolver
	client   *http.Client
	attempts int
	backoff  time.Duration
}

// New returns a notifier (nil when nothing is configured).
func New(cfg config.Notifications, res *config.Resolver) *Notifier {
	if cfg.WebhookURL == "" && cfg.Email == "" {
		return nil
	}
	return &Notifier{cfg: cfg, res: res, client: &http.Client{Timeout: 10 * time.Second}, attempts: 3, backoff: time.Second}
}

// Delivery is what happened to one channel.
type Delivery struct {
	Channel  string `json:"channel"` // webhook, email
	OK       bool   `json:"ok"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
}

// Send delivers ev on every configured channel, each bounded; it returns
// one Delivery per channel and never an error: a failing channel is
// reported in its Delivery.
func (n *Notifier) Send(ctx context.Context, ev Event) []Delivery {
	if n == nil {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	var out []Delivery
	if n.cfg.WebhookURL != "" {
		out = append(out, n.webhook(ctx, ev))
	}
	if n.cfg.Email != "" && n.cfg.SMTP != nil {
		d := Delivery{Channel: "email", Attempts: 1}
		if err := n.email(ctx, ev); err != nil {
			d.Error = err.Error()
		} else {
			d.OK = true
		}
		out = append(out, d)
	}
	return out
}

func (n *Notifier) webhook(ctx context.Context, ev Event) Delivery {
	d := Delivery{Channel: "webhook"}
	body, _ := json.Marshal(ev)
	wait := n.backoff
	for d.Attempts < n.attempts {
		d.Attempts++
		retry, err := n.post(ctx, body)
		if err == nil {
			d.OK, d.Error = true, ""
			return d
		}
		d.Error = err.Error()
		if !retry || d.Attempts == n.attempts {
			break
		}
		select {
		case <-ctx.Done():
			d.Error += " (cancelled)"
			return d
		case <-time.After(wait):
		}
		wait *= 2
	}
	return d
}

// post sends one attempt; retry says whether another could succeed.
func (n *Notifier) post(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("notifications.webhook_url: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lawsker-deploy")
	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("POST to the webhook: %w", scrubURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return false, fmt.Errorf("the webhook answered %s (not retried: check notifications.webhook_url)", resp.Status)
}

// scrubURL drops the URL from a client error: webhook URLs often carry a
// token in their path.
func scrubURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func (n *Notifier) email(ctx context.Context, ev Event) error {
	s := n.cfg.SMTP
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("notifications.smtp %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("notifications.smtp %s: %w", addr, err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("notifications.smtp %s: STARTTLS: %w", addr, err)
		}
	}
	if s.Username != "" {
		pw, err := n.res.Resolve(s.Password)
		if err != nil {
			return fmt.Errorf("notifications.smtp.password: %w", err)
		}
		// smtp.PlainAuth refuses to send the password without TLS, except
		// to localhost.
		if err := c.Auth(smtp.PlainAuth("", s.Username, pw, s.Host)); err != nil {
			return fmt.Errorf("notifications.smtp %s: login as %s: %w", addr, s.Username, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("notifications.smtp %s: MAIL FROM %s: %w", addr, s.From, err)
	}
	if err := c.Rcpt(n.cfg.Email); err != nil {
		return fmt.Errorf("notifications.smtp %s: RCPT TO %s: %w", addr, n.cfg.Email, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("notifications.smtp %s: DATA: %w", addr, err)
	}
	if _, err := w.Write(Message(s.From, n.cfg.Email, ev)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("notifications.smtp %s: the server refused the message: %w", addr, err)
	}
	return c.Quit()
}

// Message renders an event as a plain-text email.
func Message(from, to string, ev Event) []byte {
	subject := fmt.Sprintf("[lawsker-deploy] %s %s: %s", ev.App, ev.Environment, ev.Event)
	if ev.Trigger != "" {
		subject += " (" + ev.Trigger + ")"
	}
	var b strings.Builder
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, oneLine(v)) }
	header("From", from)
	header("To", to)
	header("Subject", subject)
	header("Date", ev.Time.Format(time.RFC1123Z))
	header("Content-Type", "text/plain; charset=utf-8")
	b.WriteString("\r\n")
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-13s %s\r\n", k+":", oneLine(v))
		}
	}
	line("Event", ev.Event)
	line("Status", ev.Status)
	line("Deployment", ev.DeploymentID)
	line("Release", ev.Release)
	line("Image", ev.Image)
	line("Trigger", ev.Trigger)
	line("Reason", ev.Reason)
	line("Components", strings.Join(ev.Components, ", "))
	line("Snapshot", ev.Snapshot)
	if len(ev.Summary) > 0 {
		line("Verification", fmt.Sprintf("%d passed, %d failed, %d warnings, %d skipped", ev.Summary["pass"], ev.Summary["fail"], ev.Summary["warn"], ev.Summary["skip"]))
	}
	line("Report", ev.Report)
	line("By", ev.Who)
	return []byte(b.String())
}

// oneLine keeps header and field values on one line (no header injection).
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
