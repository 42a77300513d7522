// Package release is one release run for both front doors (the CLI and
// the Dagger module): it runs a deploy or rollback graph with the
// configuration's scheduling options (workers, parallelism, continue on
// failure so every Always step runs, drain and abort on interrupt), then
// finishes it (the typed outcome of every target and of the release, and
// the notifications). The front doors only render what it returns.
package release
