package redact

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStringMasksEveryForm(t *testing.T) {
	r := New()
	r.Add("p@ss w/rd\"x", "")
	for in, want := range map[string]string{
		`password=p@ss w/rd"x;`:               "password=[REDACTED];",
		"postgres://u:p%40ss+w%2Frd%22x@h/db": "postgres://u:[REDACTED]@h/db",
		"path p@ss%20w%2Frd%22x":              "path [REDACTED]",
		`{"error":"bad p@ss w/rd\"x"}`:        `{"error":"bad [REDACTED]"}`,
		"basic cEBzcyB3L3JkIng=":              "basic [REDACTED]",
		"nothing secret here":                 "nothing secret here",
	} {
		assert.Equal(t, want, r.String(in), in)
	}
	var nilR *Redactor
	assert.Equal(t, "x", nilR.String("x"))
}

func TestErrorKeepsChain(t *testing.T) {
	r := New()
	r.Add("hunter2")
	err := r.Error(fmt.Errorf("login as admin:hunter2: %w", fs.ErrPermission))
	assert.EqualError(t, err, "login as admin:[REDACTED]: permission denied")
	assert.True(t, errors.Is(err, fs.ErrPermission))
	assert.Nil(t, r.Error(nil))
}

func TestWriterCatchesSecretsSplitAcrossWrites(t *testing.T) {
	r := New()
	r.Add("s3cr3t-token")
	var out bytes.Buffer
	w := r.NewWriter(&out)
	for _, chunk := range []string{"token=s3c", "r3t-to", "ken done; tail s3c"} {
		n, err := w.Write([]byte(chunk))
		require.NoError(t, err)
		assert.Equal(t, len(chunk), n)
	}
	assert.Equal(t, "token=[REDACTED] done; tail ", out.String(), "a possible prefix is held back")
	require.NoError(t, w.Flush())
	assert.Equal(t, "token=[REDACTED] done; tail s3c", out.String())
}

func TestSecretsAddedLaterAreMasked(t *testing.T) {
	r := New()
	assert.Equal(t, "a b", r.String("a b"))
	r.Add("b")
	assert.Equal(t, "a [REDACTED]", r.String("a b"))
}
