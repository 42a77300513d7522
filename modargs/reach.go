package modargs

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
)

// CheckTargetServices checks the number of --target-ssh services against
// targets[]: none (every target is dialled at its configured address from
// the engine), or one per target, in the order of targets[].
func CheckTargetServices(cfg *config.Config, n int) error {
	if n == 0 || n == len(cfg.Targets) {
		return nil
	}
	names := make([]string, len(cfg.Targets))
	for i, t := range cfg.Targets {
		names[i] = fmt.Sprintf("targets[%d] %s (%s:%d)", i, t.Name, t.Host, t.SSH.Port)
	}
	return fmt.Errorf("--target-ssh: %d service(s) given for %d target(s): pass one per target, in the order of targets[] (%s), or none to dial every target from the engine",
		n, len(cfg.Targets), strings.Join(names, ", "))
}

// CheckLoopbackTargets refuses, before anything runs, a target on the
// caller's loopback that no --target-ssh service forwards: inside a
// function 127.0.0.1 is the function's own container, so the connection
// could only be refused.
func CheckLoopbackTargets(cfg *config.Config, services int) error {
	if services > 0 {
		return nil
	}
	for i, t := range cfg.Targets {
		if deploy.IsLoopback(t.Host) {
			return fmt.Errorf("targets[%d] %s is at %s, your machine's loopback, which a Dagger function cannot reach (127.0.0.1 in a function is its own container): pass --target-ssh=tcp://localhost:%d to the module", i, t.Name, t.Host, t.SSH.Port)
		}
	}
	return nil
}

// Reach records that target i is reached at endpoints[i] (a service's
// host:port inside the engine) instead of its configured address. The
// configured host and port still name it for known_hosts.
func Reach(cfg *config.Config, endpoints []string) {
	for i, e := range endpoints {
		cfg.Targets[i].SSH.Via = e
	}
}

// ProbeSSH checks that addr answers like an SSH server (its version line
// comes first, RFC 4253) within timeout, so a forward to nothing, or to
// something that is no SSH server, is said before anything else runs.
func ProbeSSH(ctx context.Context, what, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s does not answer at %s: %w", what, addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReaderSize(c, 512)
	said := false
	for range 20 { // servers may send other lines before the version
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "SSH-") {
			return nil
		}
		said = said || line != ""
		if err != nil {
			if !said {
				return fmt.Errorf("%s at %s closed or said nothing within %s (%v): is an SSH server listening at the other end of the forward?", what, addr, timeout, err)
			}
			break
		}
	}
	return fmt.Errorf("%s at %s is not an SSH server (it did not send an SSH version line)", what, addr)
}

// CheckRegistryService refuses a --registry service when the registry is
// not on the caller's loopback: the service stands for the caller's local
// registry (127.0.0.1:5000), never for a registry the engine reaches by
// name, which would then be named twice.
func CheckRegistryService(cfg *config.Config) error {
	host := deploy.RegistryOf(cfg.Backend.Image)
	if deploy.IsLoopback(host) {
		return nil
	}
	return fmt.Errorf("--registry: a service and a registry host are both given: backend.image names the registry %s, which the engine reaches by name; --registry stands only for a registry on your machine's loopback (127.0.0.1:5000): drop it", host)
}

// CheckStore refuses a snapshot store in the function's own filesystem: a
// file:// store inside a Dagger function is gone when the call ends, with
// every snapshot taken, and a rollback would find none.
func CheckStore(cfg *config.Config) error {
	st := cfg.Snapshots.Store
	if !strings.HasPrefix(st, "file://") {
		return nil
	}
	return fmt.Errorf("snapshots.store: %s would be a folder of the Dagger function's container, which is thrown away when the call ends (with every snapshot in it): use \"target\" (a folder on the first target, over SFTP) or an object store (s3://bucket?region=..., gs://, azblob://); the static binary (lawsker-deploy) can keep file:// stores", st)
}
