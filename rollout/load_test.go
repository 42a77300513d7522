package rollout

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// traffic is what a constant-rate client saw during a run.
type traffic struct {
	Total, OK, Maintenance int
	// Errors: 5xx other than maintenance answers, resets, timeouts.
	Errors []string
	// Mismatched: answers of code running on another release's schema.
	Mismatched []mismatch
	// FirstHold and LastHold frame the maintenance answers.
	FirstHold, LastHold time.Time
	Codes               map[string]int // "code on schema" -> answers
}

func (tr traffic) String() string {
	var cs []string
	for k, n := range tr.Codes {
		cs = append(cs, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(cs)
	hold := time.Duration(0)
	if tr.Maintenance > 0 {
		hold = tr.LastHold.Sub(tr.FirstHold)
	}
	return fmt.Sprintf("%d requests: %d ok (%s), %d errors, %d on the wrong schema, %d maintenance answers (503 with Retry-After) over %s",
		tr.Total, tr.OK, strings.Join(cs, ", "), len(tr.Errors), len(tr.Mismatched), tr.Maintenance, hold.Round(time.Millisecond))
}

type mismatch struct {
	What string
	At   time.Time // when the request was sent
}

// schemaLoad sends GET url (the sample's /api/v1/schema) at rate per
// second from vegeta's constant pacer until stop is called, and classifies
// every answer: 200 whose code and schema agree, a maintenance 503 with
// Retry-After, or an error.
func schemaLoad(t *testing.T, url string, rate int) (stop func() traffic) {
	t.Helper()
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	attacker := vegeta.NewAttacker(vegeta.Timeout(5*time.Second), vegeta.Workers(16), vegeta.KeepAlive(true))
	results := attacker.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, 0, "rollback")
	done := make(chan traffic, 1)
	go func() {
		tr := traffic{Codes: map[string]int{}}
		for res := range results {
			tr.Total++
			switch {
			case res.Code == http.StatusOK:
				var body struct{ Code, Schema string }
				if err := json.Unmarshal(res.Body, &body); err != nil || body.Code == "" {
					tr.Errors = append(tr.Errors, fmt.Sprintf("200 with %q", res.Body))
					continue
				}
				tr.Codes[body.Code+" on "+body.Schema]++
				if body.Code != body.Schema {
					tr.Mismatched = append(tr.Mismatched, mismatch{body.Code + " on " + body.Schema, res.Timestamp})
					continue
				}
				tr.OK++
			case res.Code == http.StatusServiceUnavailable && res.Headers.Get("Retry-After") != "":
				tr.Maintenance++
				if tr.FirstHold.IsZero() {
					tr.FirstHold = res.Timestamp
				}
				tr.LastHold = res.Timestamp.Add(res.Latency)
			default:
				tr.Errors = append(tr.Errors, fmt.Sprintf("%d %s %q at %s", res.Code, res.Error, firstLine(res.Body), res.Timestamp.Format("15:04:05.000")))
			}
		}
		done <- tr
	}()
	return func() traffic {
		attacker.Stop()
		return <-done
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
