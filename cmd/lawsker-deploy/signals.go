package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// interruptContext turns the first Ctrl-C (or SIGTERM) into cancellation of
// ctx: no new step starts and running steps may drain. The second closes the
// abort channel: running steps are aborted at once. Cleanup steps (lock
// release) still run either way.
func interruptContext(parent context.Context, stderr io.Writer) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(parent)
	abort := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		count := 0
		for {
			select {
			case <-sigs:
				count++
				switch count {
				case 1:
					fmt.Fprintln(stderr, "\ninterrupted: no new steps start; running steps may finish (Ctrl-C again to abort them)")
					cancel()
				case 2:
					fmt.Fprintln(stderr, "\naborting running steps; cleanup (lock release) still runs")
					close(abort)
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, abort, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
