package deploy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"

	"github.com/lawsker/lawsker-deploy/config"
)

// secretsKeyFile holds the target's key for the secrets' keyed hash (32
// random bytes, mode 0600, made on first use beside state.json).
func secretsKeyFile(l Layout) string { return path.Join(l.Base, ".secrets-hmac-key") }

// secretValues are the resolved values a release's backend is given
// (backend.secret_env and database.password), by name.
func secretValues(cfg *config.Config, res *config.Resolver) (map[string]string, error) {
	out := map[string]string{}
	for k, ref := range cfg.Backend.SecretEnv {
		v, err := res.Resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("backend.secret_env.%s: %w", k, err)
		}
		out["backend.secret_env."+k] = v
	}
	if db := cfg.Database; db != nil {
		v, err := res.Resolve(db.Password)
		if err != nil {
			return nil, fmt.Errorf("database.password: %w", err)
		}
		out["database.password"] = v
	}
	return out, nil
}

// SecretsHash is an HMAC-SHA256, under key, of the names and values: it
// says whether a value changed without holding one (the key stays on the
// target, whose env files hold the values anyway; without it the hash
// cannot be tested against guesses elsewhere).
func SecretsHash(key []byte, values map[string]string) string {
	if len(values) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, key)
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		m.Write([]byte(n))
		m.Write([]byte{0})
		m.Write([]byte(values[n]))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// secretsHash is this run's SecretsHash on a target, its key read (or
// made) there.
func (d *Deployment) secretsHash(_ context.Context, tr *targetRun) (string, error) {
	values, err := secretValues(d.req.Config, d.req.Resolver)
	if err != nil || len(values) == 0 {
		return "", err
	}
	p := secretsKeyFile(tr.layout)
	key, err := tr.host.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist):
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return "", err
		}
		if err := tr.host.MkdirAll(tr.layout.Base); err != nil {
			return "", err
		}
		if err := tr.host.WriteFile(p, key, 0o600); err != nil {
			return "", fmt.Errorf("writing the secrets' hash key %s: %w", p, err)
		}
	case err != nil:
		return "", fmt.Errorf("reading the secrets' hash key %s: %w", p, err)
	case len(key) < 32:
		return "", fmt.Errorf("the secrets' hash key %s is damaged (%d bytes, not 32): remove it, the next deploy makes a new one (and redeploys once)", p, len(key))
	}
	return SecretsHash(key, values), nil
}
