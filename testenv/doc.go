// Package testenv gives tests real servers: PostgreSQL, Redis, the Docker
// engine, an OpenSSH server (the "target host"), nginx, an OCI registry, S3
// (versitygw), an ACME CA (pebble) and Prometheus, each a throwaway instance
// on a free loopback port, stopped when the test ends.
//
// A missing server is a test failure, never a skip: the message says to run
// scripts/setup-testenv.sh, which installs everything (and which the test
// command runs first). Every wait is bounded and reports the server's log.
package testenv
