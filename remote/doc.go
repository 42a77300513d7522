// Package remote reaches the hosts a release is deployed to, over SSH with
// golang.org/x/crypto/ssh: host keys are checked against known_hosts (a
// mismatch is refused with both fingerprints shown), keys come from a
// secret or the SSH agent, and every connection attempt is bounded.
package remote
