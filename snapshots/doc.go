// Package snapshots keeps what a release needs to come back: a manifest,
// the database dump (pg_dump -Fc, streamed from the target into the store
// with no full local copy), and later the frontend tarball, rendered
// configuration and images by digest. A restore verifies every checksum
// before anything changes, restores the database into a fresh database and
// swaps names in one short step, keeping the replaced one.
package snapshots
