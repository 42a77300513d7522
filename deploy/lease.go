package deploy

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lawsker/lawsker-deploy/remote"
)

// lease is a dead man's switch on the target for a release that serves
// before it is verified. It is a shell session, opened on the deploy's SSH
// connection before nginx is pointed at the new release, that waits for one
// line on its standard input: "keep" (the release was verified, or the run
// reverted it itself) ends it; end of input (this process was killed, or its
// connection died) makes the target put the previous release's site back by
// itself (siteCmds). The journal still holds the rest of the undo, which
// the next run's converge replays. So a deploy killed after the switch
// leaves the previous release serving within a moment, not at the next run.
type lease struct {
	w    *io.PipeWriter
	done chan error
}

// leaseScript reads the verdict; anything but "keep" runs the restore,
// detached from the dying session and with no output to write to it.
const leaseScript = `IFS= read -r verdict; [ "$verdict" = keep ] && exit 0; (eval "$1") </dev/null >/dev/null 2>&1`

// startLease opens the session; it returns once the target runs it (the
// shell has started), so the switch that follows is covered.
func startLease(ctx context.Context, h *remote.Host, restore [][]string) (*lease, error) {
	pr, pw := io.Pipe()
	ls := &lease{w: pw, done: make(chan error, 1)}
	started := make(chan struct{})
	in := &firstRead{r: pr, started: started}
	// The session outlives the switch step's context: only end (or this
	// process's death) finishes it.
	go func() {
		err := h.RunStream(context.WithoutCancel(ctx), in, io.Discard, "sh", "-c", leaseScript, "sh", remote.Script(restore...))
		pr.CloseWithError(fmt.Errorf("the dead man's switch session ended: %v", err)) // end's write must not block
		ls.done <- err
	}()
	// The SSH library reads standard input only once the command started.
	select {
	case <-started:
		return ls, nil
	case err := <-ls.done:
		return nil, fmt.Errorf("the dead man's switch for the switch could not start on the target: %w", err)
	case <-ctx.Done():
		pw.Close()
		return nil, ctx.Err()
	}
}

// end tells the target to keep what serves now, and waits (bounded) for it
// to have read that.
func (ls *lease) end() error {
	if ls == nil {
		return nil
	}
	_, werr := io.WriteString(ls.w, "keep\n")
	ls.w.Close()
	select {
	case err := <-ls.done:
		if werr != nil {
			return werr
		}
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the target did not acknowledge the end of the dead man's switch within 30s")
	}
}

// firstRead signals when its reader is first read from.
type firstRead struct {
	r       io.Reader
	started chan struct{}
	once    bool
}

func (f *firstRead) Read(p []byte) (int, error) {
	if !f.once {
		f.once = true
		close(f.started)
	}
	return f.r.Read(p)
}

// fire makes the target put the previous site back now (end of input
// without "keep"), for a revert that could not do it itself.
func (ls *lease) fire() {
	if ls == nil {
		return
	}
	ls.w.Close()
	select {
	case <-ls.done:
	case <-time.After(30 * time.Second):
	}
}
