package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// maxSecretFile bounds a secret read from a file.
const maxSecretFile = 64 << 10

// MinSecretLength is the shortest secret accepted: a shorter value is no
// secret, and masking it in output would mangle ordinary text.
const MinSecretLength = 6

// Resolver turns secret references into values at run time.
type Resolver struct {
	// Provided values win over the environment and files, keyed by the
	// reference ("env:DB_PASSWORD", "file:/abs/or/relative/path"). The
	// Dagger layer fills it from *dagger.Secret arguments (RefForURI).
	Provided map[string]string
	// Sealed resolves Provided values only: never this process's
	// environment or files. A Dagger function runs in a container of the
	// engine, not on the caller's machine, so a reference the caller did
	// not pass must fail with the --secrets form that would pass it.
	Sealed bool
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Home expands a leading "~/" in file references; "" means os.UserHomeDir.
	Home string
	// OnResolve, when set, sees every value resolved (to register it with a
	// redactor before it can reach any output).
	OnResolve func(value string)
}

// ErrSecretMissing is wrapped by Resolve when a reference has no value.
var ErrSecretMissing = errors.New("secret not available")

// Resolve returns the value a reference points to. The error names the
// reference, never the value.
func (r *Resolver) Resolve(ref SecretRef) (string, error) {
	if ref.IsZero() {
		return "", fmt.Errorf("empty secret reference: %w", ErrSecretMissing)
	}
	v, err := r.resolve(ref)
	if err != nil {
		return "", err
	}
	if len(v) < MinSecretLength {
		return "", fmt.Errorf("%s: the value is shorter than %d characters; use a real secret (short values cannot be kept out of output reliably)", ref, MinSecretLength)
	}
	if r.OnResolve != nil {
		r.OnResolve(v)
	}
	return v, nil
}

// ProvidedFor is the key of Provided that feeds ref ("" when none does):
// the reference itself, or for a file the path written another way (see
// matchFile).
func (r *Resolver) ProvidedFor(ref SecretRef) (string, error) {
	if _, ok := r.Provided[string(ref)]; ok {
		return string(ref), nil
	}
	if ref.Kind() == SecretFromFile {
		return r.matchFile(ref)
	}
	return "", nil
}

func (r *Resolver) resolve(ref SecretRef) (string, error) {
	key, err := r.ProvidedFor(ref)
	if err != nil {
		return "", err
	}
	if key != "" {
		return r.Provided[key], nil
	}
	if r.Sealed {
		return "", fmt.Errorf("%s was not passed to the engine: add --secrets=%s (a Dagger function reads none of your environment variables or files by itself): %w", ref, ref.URI(), ErrSecretMissing)
	}
	switch ref.Kind() {
	case SecretFromEnv:
		lookup := r.LookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		v, ok := lookup(ref.Name())
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set: %w", ref, ref.Name(), ErrSecretMissing)
		}
		return v, nil
	case SecretFromFile:
		path, err := r.expand(ref.Name())
		if err != nil {
			return "", fmt.Errorf("%s: %w", ref, err)
		}
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w: %w", ref, ErrSecretMissing, err)
		}
		defer f.Close()
		buf := make([]byte, maxSecretFile+1)
		n, _ := f.Read(buf)
		if n > maxSecretFile {
			return "", fmt.Errorf("%s: file is larger than %d bytes; is it the right file?", ref, maxSecretFile)
		}
		v := strings.TrimRight(string(buf[:n]), "\r\n")
		if v == "" {
			return "", fmt.Errorf("%s: file is empty: %w", ref, ErrSecretMissing)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s: unknown secret reference kind %q", ref, ref.Kind())
}

// RefForURI maps the URI a Dagger secret was loaded from (env://NAME,
// file:///path) to the reference it provides ("env:NAME", "file:/path"), so
// `--secrets=env://DB_PASSWORD,file://./id_ed25519` feeds the references of a
// configuration. A file path is kept as the caller wrote it (cleaned): it is
// a path on the caller's machine, which means nothing in the engine. Other providers (cmd://, op://, vault://) carry no name a
// configuration can refer to and are refused with a hint.
func RefForURI(uri string) (SecretRef, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	switch {
	case ok && scheme == SecretFromEnv && formats["envname"].ok(rest):
		return SecretRef(SecretFromEnv + ":" + rest), nil
	case ok && scheme == SecretFromFile && rest != "":
		return SecretRef(SecretFromFile + ":" + filepath.Clean(rest)), nil
	case ok:
		return "", fmt.Errorf("secret from %s:// cannot stand for a reference in the configuration: pass it as env://NAME or file://PATH (and reference env:NAME or file:PATH)", scheme)
	}
	return "", fmt.Errorf("secret URI %q is not of the form env://NAME or file://PATH", uri)
}

func (r *Resolver) expand(p string) (string, error) {
	if !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home := r.Home
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot expand ~: %w", err)
		}
		home = h
	}
	return filepath.Join(home, p[2:]), nil
}

// SecretUse is one secret reference in a configuration and where it is used.
type SecretUse struct {
	Path string    `json:"path"`
	Ref  SecretRef `json:"ref"`
}

// SecretRefs lists every secret reference in the configuration, by path.
func (c *Config) SecretRefs() []SecretUse {
	var l refList
	for i, t := range c.Targets {
		l.add(indexPath("targets", i)+".ssh.key", t.SSH.Key)
	}
	if c.Registry != nil {
		l.add("registry.password", c.Registry.Password)
	}
	l.addMap("backend.secret_env.", c.Backend.SecretEnv)
	if c.Database != nil {
		l.add("database.password", c.Database.Password)
		l.add("database.admin_password", c.Database.AdminPassword)
	}
	if c.Redis != nil {
		l.add("redis.password", c.Redis.Password)
	}
	l.add("monitoring.grafana_admin_password", c.Monitoring.GrafanaAdminPassword)
	l.add("verification.login.password", c.Verification.Login.Password)
	if c.Notifications.SMTP != nil {
		l.add("notifications.smtp.password", c.Notifications.SMTP.Password)
	}
	return l
}

// AllSecretRefs is SecretRefs and the references only some runs need: the
// DNS provider's credentials (DNS-01 issuance), the snapshot store's S3
// keys and the age identity (restores).
func (c *Config) AllSecretRefs() []SecretUse {
	l := refList(c.SecretRefs())
	l.addMap("tls.dns_credentials.", c.TLS.DNSCredentials)
	l.add("snapshots.s3_access_key_id", c.Snapshots.S3AccessKeyID)
	l.add("snapshots.s3_secret_access_key", c.Snapshots.S3SecretAccessKey)
	l.add("snapshots.age_identity", c.Snapshots.AgeIdentity)
	return l
}

// refList collects the set references, by path.
type refList []SecretUse

func (l *refList) add(path string, r SecretRef) {
	if !r.IsZero() {
		*l = append(*l, SecretUse{Path: path, Ref: r})
	}
}

// addMap adds a map's references in the order of their keys.
func (l *refList) addMap(prefix string, m map[string]SecretRef) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		l.add(prefix+k, m[k])
	}
}

// CheckSecrets returns one problem per secret reference that has no value.
func (c *Config) CheckSecrets(r *Resolver) Problems {
	var ps Problems
	for _, s := range c.SecretStatuses(r) {
		if !s.Available {
			ps = append(ps, Problem{Path: s.Path, Message: s.Problem})
		}
	}
	return ps
}

// matchFile finds the provided file secret a file reference stands for: the
// same path once cleaned, or, for a relative or "~/" reference, the one
// provided absolute path that ends with it (the caller's shell or the
// Dagger CLI made it absolute: /home/u/app/.cache/id for file:.cache/id).
// "" when none matches; an error when two do.
func (r *Resolver) matchFile(ref SecretRef) (string, error) {
	name := ref.Name()
	want := filepath.Clean(name)
	tail := ""
	switch {
	case strings.HasPrefix(name, "~/"):
		tail = "/" + filepath.Clean(name[2:])
	case !filepath.IsAbs(name):
		tail = "/" + want
	}
	var found []string
	for k := range r.Provided {
		kind, p, _ := strings.Cut(k, ":")
		if kind != SecretFromFile {
			continue
		}
		p = filepath.Clean(p)
		if p == want || (tail != "" && filepath.IsAbs(p) && strings.HasSuffix(p, tail)) {
			found = append(found, k)
		}
	}
	sort.Strings(found)
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%s: %d secrets passed could stand for it (%s): pass only one", ref, len(found), strings.Join(found, ", "))
}

// URI is the --secrets form that provides the reference to a Dagger
// function: env://NAME or file://PATH.
func (r SecretRef) URI() string {
	return r.Kind() + "://" + r.Name()
}
