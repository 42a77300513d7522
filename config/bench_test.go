package config

import (
	"strings"
	"testing"
)

// BenchmarkParseLargeFile parses a file near MaxFileSize with 200,000
// tokens (line numbers are tracked for every one).
func BenchmarkParseLargeFile(b *testing.B) {
	items := strings.TrimSuffix(strings.Repeat("\"x\",\n", 200000), ",\n")
	in := []byte(`{"version": 1, "app": "web", "targets": [{"name": "a", "host": "h"}], "backend": {"image": "ghcr.io/a/b", "migrate_command": [` + items + `]}}`)
	if len(in) > MaxFileSize {
		b.Fatalf("input is %d bytes, over MaxFileSize", len(in))
	}
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Parse(in, ImportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
