// Package modargs checks and applies what a `dagger call` hands the module,
// in plain Go so it is tested with `go test`: secrets matched to the
// configuration's references (and nothing read from the engine's own
// environment or files), the services that stand for targets and the
// registry on the caller's machine, and what cannot work inside a function
// (a snapshot store in the function's throwaway filesystem). Package main
// turns Dagger values into the strings these functions take, and calls
// them before anything changes anywhere.
package modargs
