// Command lawsker-deploy is the static-binary front door of lawsker-deploy:
// the same verbs as the Dagger module, over the same packages, for hosts and
// emergencies where no Dagger engine is at hand.
//
// Exit codes: 0 success; 1 the run failed (or was cancelled); 2 usage or
// configuration error (nothing was changed).
package main

import (
	"context"
	"os"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, abort, stop := interruptContext(context.Background(), os.Stderr)
	defer stop()
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv, abort: abort, interactive: isTerminal()}
	os.Exit(c.run(ctx, os.Args[1:]))
}
