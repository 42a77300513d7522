package snapshots

import (
	"fmt"
	"sort"
	"time"
)

// Decision is what retention does with one snapshot, and why.
type Decision struct {
	Manifest *Manifest
	Keep     bool
	Reason   string
}

// Retention decides which snapshots to keep: the newest keepLast, every one
// younger than retentionDays, and every one holding an image a serving or
// warm release runs (protected); the others go. Newest first.
func Retention(ms []*Manifest, keepLast, retentionDays int, now time.Time, protected map[string]string) []Decision {
	sorted := append([]*Manifest(nil), ms...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Created.After(sorted[j].Created) })
	cutoff := now.Add(-time.Duration(retentionDays) * 24 * time.Hour)
	var out []Decision
	for i, m := range sorted {
		d := Decision{Manifest: m}
		for release, image := range protected {
			if m.Images[ComponentBackend] == image && image != "" {
				d.Keep, d.Reason = true, fmt.Sprintf("holds the image of the %s release", release)
			}
		}
		switch {
		case d.Keep:
		case i < keepLast:
			d.Keep, d.Reason = true, fmt.Sprintf("one of the newest %d", keepLast)
		case m.Created.After(cutoff):
			d.Keep, d.Reason = true, fmt.Sprintf("younger than %d days", retentionDays)
		default:
			d.Reason = fmt.Sprintf("older than %d days and not among the newest %d", retentionDays, keepLast)
		}
		out = append(out, d)
	}
	return out
}
