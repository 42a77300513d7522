//go:build tools

package main

// The Dagger SDK is imported by the generated code only (git-ignored); this
// keeps it in go.mod for hack/daggercheck, which type-checks main.go against
// it.
import _ "dagger.io/dagger"
