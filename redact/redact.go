// Package redact keeps secret values out of every output: terminal, log
// files, reports and errors. Values are registered as soon as they are
// resolved; every writer the tool uses goes through a Redactor.
package redact

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Mask replaces a secret in output.
const Mask = "[REDACTED]"

// Redactor replaces registered secret values (and their URL-, JSON- and
// base64-encoded forms) with Mask. It is safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	values   map[string]bool
	replacer *strings.Replacer
	sorted   []string // longest first, for partial-match hold-back
}

// New returns a Redactor with no secrets.
func New() *Redactor { return &Redactor{values: map[string]bool{}} }

// Add registers secret values. Empty values are ignored.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if v == "" {
			continue
		}
		for _, form := range forms(v) {
			r.values[form] = true
		}
	}
	r.sorted = r.sorted[:0]
	for v := range r.values {
		r.sorted = append(r.sorted, v)
	}
	sort.Slice(r.sorted, func(i, j int) bool {
		if len(r.sorted[i]) != len(r.sorted[j]) {
			return len(r.sorted[i]) > len(r.sorted[j])
		}
		return r.sorted[i] < r.sorted[j]
	})
	pairs := make([]string, 0, 2*len(r.sorted))
	for _, v := range r.sorted {
		pairs = append(pairs, v, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// forms are the ways a value can appear in output.
func forms(v string) []string {
	out := []string{v, url.QueryEscape(v), url.PathEscape(v), base64.StdEncoding.EncodeToString([]byte(v))}
	if j, err := json.Marshal(v); err == nil {
		out = append(out, string(j[1:len(j)-1]))
	}
	// strings.Replacer matches the longest first only among equal starts;
	// drop duplicates and forms too short to be meaningful (base64 of 1 byte
	// is still 4 characters, which is fine).
	seen := map[string]bool{}
	var uniq []string
	for _, f := range out {
		if f != "" && !seen[f] {
			seen[f] = true
			uniq = append(uniq, f)
		}
	}
	return uniq
}

// String returns s with every secret masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.replacer
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// Bytes returns b with every secret masked.
func (r *Redactor) Bytes(b []byte) []byte { return []byte(r.String(string(b))) }

// Error returns err with its message masked; errors.Is/As still see the
// original chain.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	return redacted{msg: r.String(err.Error()), err: err}
}

type redacted struct {
	msg string
	err error
}

func (e redacted) Error() string { return e.msg }
func (e redacted) Unwrap() error { return e.err }

// holdBack returns how many trailing bytes of s could be the start of a
// secret, so a streaming writer keeps them until the next write.
func (r *Redactor) holdBack(s string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	best := 0
	for _, v := range r.sorted {
		for n := min(len(v)-1, len(s)); n > best; n-- {
			if strings.HasSuffix(s, v[:n]) {
				best = n
				break
			}
		}
	}
	return best
}

// Writer masks secrets in everything written to w, including a secret split
// across two writes: a tail that could begin a secret is held until the next
// write or Flush.
type Writer struct {
	r       *Redactor
	w       io.Writer
	mu      sync.Mutex
	pending string
}

// NewWriter wraps w.
func (r *Redactor) NewWriter(w io.Writer) *Writer { return &Writer{r: r, w: w} }

// Write masks and forwards p. It reports len(p) on success.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.r.String(w.pending + string(p))
	keep := w.r.holdBack(s)
	w.pending = s[len(s)-keep:]
	if _, err := io.WriteString(w.w, s[:len(s)-keep]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what was held back (it cannot be a whole secret any more:
// nothing follows it).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == "" {
		return nil
	}
	_, err := io.WriteString(w.w, w.r.String(w.pending))
	w.pending = ""
	return err
}
