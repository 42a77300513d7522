package testenv

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// Figure prints a measured figure of a test: in its log and, when
// LAWSKER_FIGURES names a file (scripts/test.sh sets one), into it, so the
// suite prints every figure together at its end.
func Figure(t testing.TB, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Logf("FIGURE %s", line)
	if path := os.Getenv("LAWSKER_FIGURES"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatalf("testenv: LAWSKER_FIGURES: %v", err)
		}
		defer f.Close()
		fmt.Fprintf(f, "FIGURE %s: %s\n", t.Name(), line)
	}
}

// Listen holds a TCP address (a port something else wants) until the test
// ends or the listener is closed.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("testenv: listen %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
