// Package textdist finds the closest known name to a misspelt one, for
// "did you mean" hints in error messages.
package textdist

import "sort"

// Levenshtein is the edit distance between a and b (inputs longer than 64
// bytes count as 64 apart: hints are for short names, and this bounds the
// work a hostile input can cause).
func Levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Closest returns the candidate within distance 2 of name (the smallest
// distance, then the first in sorted order), or "" when none is that close.
func Closest(name string, candidates []string) string {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	best, bestDist := "", 3
	for _, c := range sorted {
		if d := Levenshtein(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}
