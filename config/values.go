package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Duration is a length of time written as a Go duration string: "90s",
// "10m", "1h30m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string ("10m0s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// DurationPattern is the form of a duration in files (and the schema): "0"
// or numbers with units, no sign.
const DurationPattern = `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`

var durationRE = regexp.MustCompile(DurationPattern)

func (d *Duration) decodeString(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 || !durationRE.MatchString(s) {
		return fmt.Errorf(`must be a duration such as "30s", "10m" or "1h30m", got %s`, quote(s))
	}
	*d = Duration(v)
	return nil
}

// SecretRef says where a secret comes from; the file never holds the secret
// itself. Forms:
//
//	env:NAME   the environment variable NAME
//	file:PATH  the contents of the file PATH (trailing newline trimmed)
//
// The empty reference means "not set".
type SecretRef string

// Secret reference kinds.
const (
	SecretFromEnv  = "env"
	SecretFromFile = "file"
)

// Kind returns "env" or "file" ("" for the empty reference).
func (r SecretRef) Kind() string { k, _, _ := strings.Cut(string(r), ":"); return k }

// Name returns the variable name or file path.
func (r SecretRef) Name() string { _, n, _ := strings.Cut(string(r), ":"); return n }

// IsZero reports whether the reference is unset.
func (r SecretRef) IsZero() bool { return r == "" }

func (r *SecretRef) decodeString(s string) error {
	kind, name, found := strings.Cut(s, ":")
	switch {
	case found && kind == SecretFromEnv && formats["envname"].ok(name):
		*r = SecretRef(s)
		return nil
	case found && kind == SecretFromFile && formats["path"].ok(name):
		*r = SecretRef(s)
		return nil
	case found && (kind == SecretFromEnv || kind == SecretFromFile):
		return fmt.Errorf("must be a secret reference: %q needs %s", kind+":", map[string]string{
			SecretFromEnv: "an environment variable name (env:DB_PASSWORD)", SecretFromFile: "a file path (file:/run/secrets/db)"}[kind])
	}
	// Never echo the value: it may be the secret itself.
	return fmt.Errorf("must be a secret reference (env:NAME or file:PATH), not a value; put the secret in an environment variable or a file and reference it")
}

// SecretRefPattern is the JSON Schema pattern of a secret reference.
const SecretRefPattern = `^(env:[A-Za-z_][A-Za-z0-9_]{0,127}|file:[A-Za-z0-9._+@=,/~-]+)$`

// stringDecoder is implemented by types that parse themselves from a JSON
// string (Duration, SecretRef).
type stringDecoder interface{ decodeString(string) error }
