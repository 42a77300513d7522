package builds

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

// The workflows pin every action to a release and Dagger to the module's
// engine version, and pass actionlint; actionlint is proved to catch a
// broken workflow.
func TestWorkflows(t *testing.T) {
	root := testenv.RepoRoot()
	var mod struct {
		EngineVersion string `json:"engineVersion"`
	}
	data, err := os.ReadFile(filepath.Join(root, "dagger.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &mod))
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	require.NoError(t, err)
	names := map[string]bool{}
	uses := regexp.MustCompile(`uses:\s*(\S+)`)
	for _, f := range files {
		names[filepath.Base(f)] = true
		text, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range uses.FindAllStringSubmatch(string(text), -1) {
			assert.Regexp(t, `@v\d+\.\d+\.\d+$`, m[1], "%s: %s is not pinned to a release", filepath.Base(f), m[1])
		}
		if strings.Contains(string(text), "dagger/dagger-for-github") {
			assert.Contains(t, string(text), `version: "`+strings.TrimPrefix(mod.EngineVersion, "v")+`"`, "%s: the Dagger CLI must match dagger.json's engineVersion", filepath.Base(f))
		}
		assert.NotContains(t, string(text), "${{ github.event.head_commit.message", "%s: untrusted text must not reach a shell", filepath.Base(f))
	}
	assert.Equal(t, map[string]bool{"ci.yml": true, "deploy.yml": true, "rollback.yml": true}, names)

	actionlint := testenv.Bin(t, "actionlint")
	out, err := exec.Command(actionlint, files...).CombinedOutput()
	assert.NoError(t, err, "%s", out)

	broken := filepath.Join(t.TempDir(), "broken.yml")
	require.NoError(t, os.WriteFile(broken, []byte("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.event.head_commit.messag }}\n        with: {}\n"), 0o644))
	out, err = exec.Command(actionlint, broken).CombinedOutput()
	assert.Error(t, err)
	assert.NotEmpty(t, out)
}
