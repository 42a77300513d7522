// Package deploy puts a release on every target over SSH and takes it back.
//
// The deploy DAG (graph.go) is built once for `plan` and for the run, so the
// plan shown is the plan run. Its rooms follow the phases: prepare.go (lock,
// converge, the release folder and env file, pull), start.go (migrations,
// the new backend, its health gate), switch.go (upload, nginx switch, the
// release recorded, TLS, monitoring), prune.go (the release kept and
// verified, old releases gone), revert.go (the run undone), switchback.go
// (`rollback --previous`, and one piece of work under the lock).
//
// Every change to a target is written down on it before it is made: the
// write-ahead undo journal in state.json (undo.go). A revert replays it in
// reverse; the next run after a crash (converge) replays exactly the same
// entries. A release switched to but never verified is not a good release:
// while it is verified a dead man's switch runs on the target (lease.go),
// and a run that dies there leaves the previous release serving.
package deploy
