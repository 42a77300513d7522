package progress

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/lawsker/lawsker-deploy/pipelines"
)

var t0 = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

func events() []pipelines.Event {
	return []pipelines.Event{
		{Kind: pipelines.RunStarted, Time: t0},
		{Kind: pipelines.StepStarted, Step: "build-backend", Attempt: 1, Time: t0},
		{Kind: pipelines.StepStarted, Step: "build-frontend", Attempt: 1, Time: t0.Add(time.Second)},
		{Kind: pipelines.StepRetrying, Step: "build-backend", Attempt: 1, Delay: 2 * time.Second, Err: errors.New("registry 503"), Time: t0.Add(2 * time.Second)},
		{Kind: pipelines.StepFinished, Step: "build-frontend", State: pipelines.Succeeded, Elapsed: 3 * time.Second, Time: t0.Add(4 * time.Second)},
		{Kind: pipelines.StepFinished, Step: "publish", State: pipelines.Skipped, Reason: "needs build-backend, which failed", Time: t0.Add(5 * time.Second)},
		{Kind: pipelines.StepFinished, Step: "build-backend", State: pipelines.Failed, Err: errors.New("exit 1\nstderr: no space"), Elapsed: 5 * time.Second, Time: t0.Add(5 * time.Second)},
		{Kind: pipelines.RunFinished, State: pipelines.Failed, Elapsed: 5 * time.Second, Time: t0.Add(5 * time.Second)},
	}
}

func TestPlainOneLinePerEvent(t *testing.T) {
	var out bytes.Buffer
	p := NewPlain(&out)
	for _, e := range events() {
		p.Observe(e)
	}
	assert.Equal(t, `[build-backend] started
[build-frontend] started
[build-backend] attempt 1 failed: registry 503; retrying in 2s
[build-frontend] ok in 3s
[publish] skipped (needs build-backend, which failed)
[build-backend] FAILED in 5s: exit 1 | stderr: no space
steps failed in 5s
`, out.String())
}

var ansi = regexp.MustCompile("\x1b\\[[0-9]*[A-Za-z]|\r")

func TestLiveKeepsOneLinePerRunningStep(t *testing.T) {
	var out bytes.Buffer
	l := NewLive(&out)
	l.now = func() time.Time { return t0.Add(2500 * time.Millisecond) }
	evs := events()
	for _, e := range evs[:4] {
		l.Observe(e)
	}
	// The screen now shows exactly the block: two running steps.
	screen := render(out.String())
	assert.Equal(t, []string{
		"  ... build-backend               2.5s  retrying in 2s: registry 503",
		"  ... build-frontend              1.5s",
	}, screen)
	for _, e := range evs[4:] {
		l.Observe(e)
	}
	l.Stop()
	assert.Equal(t, []string{
		"[build-frontend] ok in 3s",
		"[publish] skipped (needs build-backend, which failed)",
		"[build-backend] FAILED in 5s: exit 1 | stderr: no space",
		"steps failed in 5s",
	}, render(out.String()))
}

// render replays the output on a tiny virtual screen that understands the
// two sequences Live uses: cursor up N lines and clear to the end.
func render(s string) []string {
	var lines []string
	cur := 0
	for len(s) > 0 {
		if loc := ansi.FindStringIndex(s); loc != nil && loc[0] == 0 {
			seq := s[:loc[1]]
			s = s[loc[1]:]
			switch {
			case strings.HasSuffix(seq, "A"):
				var n int
				for _, c := range seq[2 : len(seq)-1] {
					n = n*10 + int(c-'0')
				}
				cur -= n
			case strings.HasSuffix(seq, "J"):
				lines = lines[:cur]
			}
			continue
		}
		nl := strings.IndexByte(s, '\n')
		next := ansi.FindStringIndex(s)
		if nl < 0 || (next != nil && next[0] < nl) {
			break
		}
		lines = append(lines[:cur], s[:nl])
		cur++
		s = s[nl+1:]
	}
	return lines
}
