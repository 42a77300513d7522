package snapshots

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRetention(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	snap := func(id string, daysAgo int, image string) *Manifest {
		return &Manifest{ID: id, Created: now.Add(-time.Duration(daysAgo) * 24 * time.Hour), Images: map[Component]string{"backend": image}}
	}
	ms := []*Manifest{
		snap("a", 90, "img@sha256:old"), // old, holds the previous release's image
		snap("b", 60, "img@sha256:b"),   // old
		snap("c", 40, "img@sha256:c"),   // old
		snap("d", 10, "img@sha256:d"),   // young
		snap("e", 2, "img@sha256:cur"),  // newest
		snap("f", 1, "img@sha256:cur"),  // newest
	}
	decisions := Retention(ms, 2, 30, now, map[string]string{"current": "img@sha256:cur", "previous": "img@sha256:old"})
	got := map[string]string{}
	for _, d := range decisions {
		state := "delete"
		if d.Keep {
			state = "keep"
		}
		got[d.Manifest.ID] = state + ": " + d.Reason
	}
	assert.Equal(t, map[string]string{
		"f": "keep: holds the image of the current release",
		"e": "keep: holds the image of the current release",
		"d": "keep: younger than 30 days",
		"c": "delete: older than 30 days and not among the newest 2",
		"b": "delete: older than 30 days and not among the newest 2",
		"a": "keep: holds the image of the previous release",
	}, got)
	assert.Equal(t, "f", decisions[0].Manifest.ID, "newest first")

	// With nothing protected, the newest N survive whatever their age.
	old := []*Manifest{snap("x", 100, ""), snap("y", 200, ""), snap("z", 300, "")}
	decisions = Retention(old, 1, 30, now, nil)
	assert.True(t, decisions[0].Keep)
	assert.False(t, decisions[1].Keep)
	assert.False(t, decisions[2].Keep)
}
