// Package checks is the verification suite: health, functional, performance
// and security checks against a live deployment. It runs after every deploy
// and rollback (deciding automatic rollback) and on its own (`verify`).
//
// Each check has a name, a category and a timeout; independent checks run
// in parallel under a suite deadline, and an unreachable server fails its
// checks within their timeout, never hangs the suite. Every read of a
// response is bounded.
package checks
