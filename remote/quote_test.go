package remote

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var hostile = []string{
	"plain", "", "with space", "; rm -rf /", "$(reboot)", "`id`", "a'b", "'", "''", `"dq"`, "back\\slash",
	"new\nline", "tab\there", "$HOME", "${PATH}", "*", "?", "~", "-n", "a|b&c>d<e", "!bang", "#comment",
	"\x01ctrl", "ümlaut", strings.Repeat("x'", 50),
}

func TestQuoteRoundTripsThroughARealShell(t *testing.T) {
	// printf '%s\0' prints each argument as the shell received it.
	line := "printf '%s\\0' " + Quote(hostile...)
	out, err := exec.CommandContext(context.Background(), "sh", "-c", line).Output()
	require.NoError(t, err)
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	assert.Equal(t, hostile, got)
}

func TestQuoteLeavesSafeWordsBare(t *testing.T) {
	assert.Equal(t, "docker pull 127.0.0.1:5000/app@sha256:abc", Quote("docker", "pull", "127.0.0.1:5000/app@sha256:abc"))
	assert.Equal(t, `echo 'it'\''s' '' '$x'`, Quote("echo", "it's", "", "$x"))
}
