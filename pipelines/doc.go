// Package pipelines is the orchestrator every lawsker-deploy verb runs on:
// steps with declared dependencies (a DAG), a plan of stages, parallel
// execution up to a worker limit (or serial), per-attempt timeouts, retries
// with exponential backoff and jitter for errors marked retriable, and
// cancellation that stops new work, lets running steps drain for a bounded
// time, then aborts them and records what was cancelled.
//
// Steps hold only their own work. Logging, timing, retries and state
// tracking wrap them from outside; observers see every state change.
//
//	g, err := pipelines.New(
//		pipelines.Step{Name: "lock", Run: lock},
//		pipelines.Step{Name: "build-backend", Needs: []string{"lock"}, Run: buildBackend},
//		pipelines.Step{Name: "build-frontend", Needs: []string{"lock"}, Run: buildFrontend},
//		pipelines.Step{Name: "unlock", Needs: []string{"build-backend", "build-frontend"}, Always: true, Run: unlock},
//	)
//	res := pipelines.Run(ctx, g, pipelines.Options{MaxWorkers: 3})
//	if err := res.Err(); err != nil { ... }
package pipelines
