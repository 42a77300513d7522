package textdist

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLevenshtein(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"port", "prot", 2}, {"biuld", "build", 2}, {"kitten", "sitting", 3}, {"a", "", 1}, {strings.Repeat("x", 65), "x", 64}} {
		assert.Equal(t, tc.want, Levenshtein(tc.a, tc.b), "%q %q", tc.a, tc.b)
	}
}

func TestClosest(t *testing.T) {
	assert.Equal(t, "port", Closest("prot", []string{"user", "port", "key"}))
	assert.Equal(t, "", Closest("colour", []string{"context", "image"}))
	assert.Equal(t, "ab", Closest("a", []string{"ac", "ab"}), "ties go to the first in sorted order")
}
