package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolver(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key"), []byte("file-secret\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	var seen []string
	r := &Resolver{
		Provided: map[string]string{"env:FROM_DAGGER": "dagger-secret"},
		LookupEnv: func(k string) (string, bool) {
			return map[string]string{"SET": "env-secret", "BLANK": ""}[k], k == "SET" || k == "BLANK"
		},
		Home:      dir,
		OnResolve: func(v string) { seen = append(seen, v) },
	}
	for ref, want := range map[SecretRef]string{
		"env:SET": "env-secret", "env:FROM_DAGGER": "dagger-secret", SecretRef("file:" + dir + "/key"): "file-secret", "file:~/key": "file-secret",
	} {
		got, err := r.Resolve(ref)
		require.NoError(t, err, ref)
		assert.Equal(t, want, got)
	}
	assert.Len(t, seen, 4)

	for ref, want := range map[SecretRef]string{
		"env:UNSET":    "env:UNSET: environment variable UNSET is not set: secret not available",
		"env:BLANK":    "env:BLANK: environment variable BLANK is not set: secret not available",
		"file:~/none":  "file:~/none: secret not available: open " + dir + "/none: no such file or directory",
		"file:~/empty": "file:~/empty: file is empty: secret not available",
		"":             "empty secret reference: secret not available",
	} {
		_, err := r.Resolve(ref)
		assert.EqualError(t, err, want)
		assert.ErrorIs(t, err, ErrSecretMissing)
	}
}

func TestSecretRefsAndCheck(t *testing.T) {
	l, err := LoadFile("../examples/local.deploy.json", ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, []SecretUse{
		{Path: "targets[0].ssh.key", Ref: "file:.cache/demo/ssh/id_ed25519"},
		{Path: "backend.secret_env.SAMPLE_LOGIN_PASSWORD", Ref: "env:SAMPLE_LOGIN_PASSWORD"},
		{Path: "backend.secret_env.SESSION_KEY", Ref: "env:SAMPLE_SESSION_KEY"},
		{Path: "database.password", Ref: "env:SAMPLE_DB_PASSWORD"},
		{Path: "database.admin_password", Ref: "env:SAMPLE_DB_PASSWORD"},
		{Path: "verification.login.password", Ref: "env:SAMPLE_LOGIN_PASSWORD"},
	}, l.Config.SecretRefs())
	r := &Resolver{LookupEnv: func(k string) (string, bool) {
		return "db-password", k == "SAMPLE_DB_PASSWORD" || k == "SAMPLE_LOGIN_PASSWORD"
	},
		Provided: map[string]string{"file:.cache/demo/ssh/id_ed25519": "ssh-private-key"}}
	ps := l.Config.CheckSecrets(r)
	require.Len(t, ps, 1)
	assert.Equal(t, "backend.secret_env.SESSION_KEY: env:SAMPLE_SESSION_KEY: environment variable SAMPLE_SESSION_KEY is not set: secret not available", ps[0].String())
}

func TestRefForURIAndProvidedFiles(t *testing.T) {
	ref, err := RefForURI("env://DB_PASSWORD")
	require.NoError(t, err)
	assert.Equal(t, SecretRef("env:DB_PASSWORD"), ref)
	ref, err = RefForURI("file:///run/secrets/ssh_key")
	require.NoError(t, err)
	assert.Equal(t, SecretRef("file:/run/secrets/ssh_key"), ref)
	_, err = RefForURI("cmd://pass show db")
	assert.EqualError(t, err, "secret from cmd:// cannot stand for a reference in the configuration: pass it as env://NAME or file://PATH (and reference env:NAME or file:PATH)")
	_, err = RefForURI("hunter2-plain")
	assert.EqualError(t, err, `secret URI "hunter2-plain" is not of the form env://NAME or file://PATH`)

	// A path is kept as the caller wrote it (it is the caller's, not this
	// process's): relative stays relative.
	ref, err = RefForURI("file://./.cache/demo/ssh/id_ed25519")
	require.NoError(t, err)
	assert.Equal(t, SecretRef("file:.cache/demo/ssh/id_ed25519"), ref)

	// A "~/" reference matches the absolute path a shell made of it.
	home := t.TempDir()
	r := &Resolver{Home: home, Provided: map[string]string{"file:" + home + "/.ssh/id_ed25519": "provided-key-material"}}
	v, err := r.Resolve("file:~/.ssh/id_ed25519")
	require.NoError(t, err)
	assert.Equal(t, "provided-key-material", v)
}

func TestProvidedFilesMatchTheWayCallersWriteThem(t *testing.T) {
	for _, tc := range []struct {
		name, ref, provided string
	}{
		{"the same relative path", "file:.cache/demo/ssh/id_ed25519", "file:.cache/demo/ssh/id_ed25519"},
		{"relative, written with ./", "file:./.cache/demo/ssh/id_ed25519", "file:.cache/demo/ssh/id_ed25519"},
		{"relative, passed absolute", "file:.cache/demo/ssh/id_ed25519", "file:/work/app/.cache/demo/ssh/id_ed25519"},
		{"absolute, passed absolute", "file:/run/secrets/key", "file:/run/secrets/key"},
		{"home, passed absolute", "file:~/.ssh/id_ed25519", "file:/home/ci/.ssh/id_ed25519"},
		{"home, passed as written", "file:~/.ssh/id_ed25519", "file:~/.ssh/id_ed25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Resolver{Sealed: true, Provided: map[string]string{tc.provided: "key-material"}}
			v, err := r.Resolve(SecretRef(tc.ref))
			require.NoError(t, err)
			assert.Equal(t, "key-material", v)
		})
	}
	// An absolute reference never matches by its tail: it names one file.
	r := &Resolver{Sealed: true, Provided: map[string]string{"file:/other/run/secrets/key": "key-material"}}
	_, err := r.Resolve("file:/run/secrets/key")
	assert.EqualError(t, err, "file:/run/secrets/key was not passed to the engine: add --secrets=file:///run/secrets/key (a Dagger function reads none of your environment variables or files by itself): secret not available")
	// Two candidates: refused, naming both.
	r = &Resolver{Sealed: true, Provided: map[string]string{"file:/a/.ssh/id": "key-material-a", "file:/b/.ssh/id": "key-material-b"}}
	_, err = r.Resolve("file:.ssh/id")
	assert.EqualError(t, err, "file:.ssh/id: 2 secrets passed could stand for it (file:/a/.ssh/id, file:/b/.ssh/id): pass only one")
}

func TestASealedResolverReadsNothingOfItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte("on-disk-key-material"), 0o600))
	r := &Resolver{Sealed: true, Provided: map[string]string{}, LookupEnv: func(string) (string, bool) { return "from-the-environment", true }}
	_, err := r.Resolve("env:DB_PASSWORD")
	assert.EqualError(t, err, "env:DB_PASSWORD was not passed to the engine: add --secrets=env://DB_PASSWORD (a Dagger function reads none of your environment variables or files by itself): secret not available")
	_, err = r.Resolve(SecretRef("file:" + path))
	assert.ErrorIs(t, err, ErrSecretMissing)
	assert.ErrorContains(t, err, "add --secrets=file://"+path)
}
