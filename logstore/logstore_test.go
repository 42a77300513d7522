package logstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestLogsQLQuotesEveryValue(t *testing.T) {
	for _, tc := range []struct {
		q    Query
		want string
	}{
		{Query{}, "*"},
		{Query{Since: 10 * time.Minute}, "_time:10m"},
		{Query{Since: 90 * time.Second, Fields: map[string]string{"release": "r1", "source": "backend"}}, `_time:90s release:="r1" source:="backend"`},
		{Query{Since: 2 * time.Hour, Grep: `say "hi" | delete`}, `_time:2h _msg:~"say \"hi\" \\| delete"`},
		{Query{Grep: "a.b", Filter: "(i(error) OR i(panic))"}, `_msg:~"a\\.b" (i(error) OR i(panic))`},
		{Query{Fields: map[string]string{"odd key": `x"y`}}, `"odd key":="x\"y"`},
	} {
		assert.Equal(t, tc.want, tc.q.LogsQL())
	}
}

// collect runs a query and returns the messages in order.
func collect(t *testing.T, c *Client, q Query) []string {
	t.Helper()
	var got []string
	require.NoError(t, c.Query(t.Context(), q, func(e Entry) error { got = append(got, e.Message); return nil }))
	return got
}

// waitFor polls until the store has n lines matching q (ingestion is
// asynchronous: a line is searchable within a second or so).
func waitFor(t *testing.T, c *Client, q Query, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := collect(t, c, q)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestQueryByReleaseTimeAndPhrase(t *testing.T) {
	v := testenv.StartVictoriaLogs(t)
	c := New(v.URL, nil)
	now := time.Now()
	var entries []Entry
	for i := range 6 {
		rel := "r1"
		if i%2 == 1 {
			rel = "r2"
		}
		entries = append(entries, Entry{Time: now.Add(time.Duration(i-6) * time.Second), Message: fmt.Sprintf("line %d of %s", i, rel),
			Fields: map[string]string{"app": "sample", "release": rel, "source": "backend"}})
	}
	entries = append(entries, Entry{Time: now.Add(-time.Hour), Message: `an old "quoted" error of r1`, Fields: map[string]string{"app": "sample", "release": "r1", "source": "backend"}})
	require.NoError(t, c.Ingest(t.Context(), entries))

	all := waitFor(t, c, Query{Fields: map[string]string{"app": "sample"}}, 7)
	require.Len(t, all, 7)
	assert.Equal(t, `an old "quoted" error of r1`, all[0], "oldest first")
	assert.Equal(t, []string{"line 1 of r2", "line 3 of r2", "line 5 of r2"}, collect(t, c, Query{Fields: map[string]string{"release": "r2"}}))
	assert.Equal(t, []string{"line 0 of r1", "line 2 of r1", "line 4 of r1"}, collect(t, c, Query{Since: 10 * time.Minute, Fields: map[string]string{"release": "r1"}}))
	assert.Equal(t, []string{`an old "quoted" error of r1`}, collect(t, c, Query{Grep: `"quoted" error`}))
	assert.Equal(t, []string{"line 4 of r1", "line 5 of r2"}, collect(t, c, Query{Since: time.Hour / 2, Limit: 2}), "the newest two, oldest first")
}

func TestTailFollowsUntilCancelled(t *testing.T) {
	v := testenv.StartVictoriaLogs(t)
	c := New(v.URL, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- c.Tail(ctx, Query{Fields: map[string]string{"release": "live"}}, func(e Entry) error {
			mu.Lock()
			got = append(got, e.Message)
			mu.Unlock()
			return nil
		})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		require.NoError(t, c.Ingest(t.Context(), []Entry{{Message: fmt.Sprintf("live %d", i), Fields: map[string]string{"app": "sample", "release": "live", "source": "backend"}},
			{Message: "not followed", Fields: map[string]string{"app": "sample", "release": "other", "source": "backend"}}}))
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	cancel() // Ctrl-C
	select {
	case err := <-done:
		require.NoError(t, err, "a follow ended by the user is no error")
	case <-time.After(5 * time.Second):
		t.Fatal("the follow did not end when its context did")
	}
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(got), 3)
	assert.NotContains(t, got, "not followed")
}

func TestAStoreThatIsDownSaysSo(t *testing.T) {
	v := testenv.StartVictoriaLogs(t)
	c := New(v.URL, nil)
	v.Stop()
	err := c.Query(t.Context(), Query{Since: time.Minute}, func(Entry) error { return nil })
	require.ErrorIs(t, err, ErrDown)
	assert.Contains(t, err.Error(), "log store does not answer at "+v.URL)
}
