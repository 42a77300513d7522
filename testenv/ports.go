package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Blocks come from below Linux's ephemeral range (32768-60999), where
// FreePort's ports (the kernel's choice) come from, so the two never meet.
const (
	portsFile  = "/tmp/lawsker-testenv-ports"
	portsFirst = 20000
	portsLast  = 32000
)

// ReservePorts reserves a block of n consecutive loopback ports for the
// test's backends, not handed to any other test process on this machine
// (test packages run in parallel) until the test ends, and free now. Blocks
// are recorded in a file under an exclusive lock, with the owner's pid, so
// blocks of dead processes are reused.
func ReservePorts(t testing.TB, n int) int {
	t.Helper()
	f, err := os.OpenFile(portsFile, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testenv: lock %s: %v", portsFile, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	type block struct{ lo, n, pid int }
	var live []block
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var b block
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &b.lo, &b.n, &b.pid); err == nil && syscall.Kill(b.pid, 0) == nil {
			live = append(live, b)
		}
	}
	taken := func(lo int) bool {
		for _, b := range live {
			if lo < b.lo+b.n && b.lo < lo+n {
				return true
			}
		}
		for p := lo; p < lo+n; p++ {
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), 50*time.Millisecond); err == nil {
				c.Close()
				return true
			}
		}
		return false
	}
	start := portsFirst + int(time.Now().UnixNano()%int64(portsLast-portsFirst-n))
	for i := 0; i < (portsLast-portsFirst)/n; i++ {
		lo := portsFirst + (start-portsFirst+i*n)%(portsLast-portsFirst-n)
		if taken(lo) {
			continue
		}
		live = append(live, block{lo, n, os.Getpid()})
		var b strings.Builder
		for _, l := range live {
			fmt.Fprintf(&b, "%d %d %d\n", l.lo, l.n, l.pid)
		}
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt([]byte(b.String()), 0)
		}
		if err != nil {
			t.Fatalf("testenv: %s: %v", portsFile, err)
		}
		t.Cleanup(func() { releasePorts(lo) })
		return lo
	}
	t.Fatalf("testenv: no free block of %d ports in %d-%d", n, portsFirst, portsLast)
	return 0
}

func releasePorts(lo int) {
	f, err := os.OpenFile(portsFile, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX) != nil {
		return
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	data, _ := os.ReadFile(portsFile)
	var keep strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var l, n, pid int
		if _, err := fmt.Sscanf(line, "%d %d %d", &l, &n, &pid); err == nil && !(l == lo && pid == os.Getpid()) {
			keep.WriteString(line + "\n")
		}
	}
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(keep.String()), 0)
	}
}
