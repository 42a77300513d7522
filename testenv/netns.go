package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace the test makes: a host of its own with its
// own loopback, which the test process cannot reach by address. It is what
// a Dagger function sees of the caller's machine: 127.0.0.1 there is not
// 127.0.0.1 here, and only a forward (Forward, like Dagger's host
// services) connects the two.
type Netns struct {
	Name string
}

var netnsSeq atomic.Int64

// NewNetns adds a namespace with its loopback up; it is deleted when the
// test ends.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	n := &Netns{Name: fmt.Sprintf("lawsker-t%d-%d", os.Getpid(), netnsSeq.Add(1))}
	MustRun(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { _, _ = Run(context.Background(), "ip", "netns", "del", n.Name) })
	MustRun(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Command runs a program inside the namespace (`ip netns exec` execs it:
// the process is the program itself).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// DialContext connects to addr inside the namespace: the socket is made
// by a thread that entered the namespace (and is discarded afterwards), so
// it belongs there while this process uses it.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, namespace and all.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("entering netns %s: %w", n.Name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Ready is a check that addr accepts connections inside the namespace.
func (n *Netns) Ready(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		c, err := n.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// Forward listens on a free 127.0.0.1 port of the test's own network and
// forwards every connection to addr inside the namespace, as Dagger's
// host service (`tcp://localhost:PORT`) forwards a function's connections
// to the caller's machine. It returns the listening host:port; Accepted
// counts the connections made through it.
func (n *Netns) Forward(t testing.TB, addr string) *Forward {
	t.Helper()
	return StartForward(t, addr, n.DialContext)
}

// StartForward listens on a free 127.0.0.1 port and forwards every
// connection to addr, dialled with dial (nil: from here). A forward stands
// for a Dagger service: a target configured at one address, reached at
// another.
func StartForward(t testing.TB, addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Forward {
	t.Helper()
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	f := &Forward{Addr: l.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			f.Accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := dial(context.Background(), "tcp", addr)
				if err != nil {
					in.Close()
					return
				}
				mu.Lock()
				open = append(open, in, out)
				mu.Unlock()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); _ = in.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
				in.Close()
				out.Close()
			}()
		}
	}()
	return f
}

// Forward is a listening forward into a namespace.
type Forward struct {
	Addr     string // host:port to dial
	Accepted atomic.Int64
}

// command is exec.Command in the namespace (nil: this process's).
func (n *Netns) command(name string, args ...string) *exec.Cmd {
	if n == nil {
		return exec.Command(name, args...)
	}
	return n.Command(name, args...)
}

// ready is TCPReady in the namespace (nil: this process's).
func (n *Netns) ready(addr string) func(context.Context) error {
	if n == nil {
		return TCPReady(addr)
	}
	return n.Ready(addr)
}
