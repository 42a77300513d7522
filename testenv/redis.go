package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis is a throwaway Redis server with persistence off.
type Redis struct {
	Addr string
	proc *Process
}

// StartRedis starts redis-server on a free loopback port.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	port := FreePort(t)
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	r.proc = Start(t, "redis-server", commandIn(TempDir(t, "redis"), Bin(t, "redis-server"),
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"))
	r.proc.WaitFor(t, 15*time.Second, "answering PING", func(ctx context.Context) error { return redisPing(ctx, r.Addr) })
	return r
}

// redisPing speaks just enough RESP to check readiness without a client
// library (tests of real features use go-redis).
func redisPing(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if reply := string(buf[:n]); !strings.HasPrefix(reply, "+PONG") {
		return fmt.Errorf("unexpected reply %q", reply)
	}
	return nil
}
