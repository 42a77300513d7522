package pipelines

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewRejectsBadGraphs(t *testing.T) {
	tests := []struct {
		name  string
		steps []Step
		want  string
	}{
		{"empty name", []Step{{Name: ""}}, "steps[0]: name is empty"},
		{"bad name", []Step{{Name: "a; rm -rf /"}}, `steps[0]: name "a; rm -rf /" must be lowercase letters, digits and -_.:/ (at most 100)`},
		{"duplicate", []Step{{Name: "build"}, {Name: "build"}}, `steps[1] (build): name "build" is already steps[0]`},
		{"unknown need", []Step{{Name: "build"}, {Name: "deploy", Needs: []string{"biuld"}}}, `steps[1] (deploy).needs[0]: unknown step "biuld"; did you mean "build"?`},
		{"unknown need, nothing close", []Step{{Name: "deploy", Needs: []string{"zzzzzz"}}}, `steps[0] (deploy).needs[0]: unknown step "zzzzzz"`},
		{"self", []Step{{Name: "a", Needs: []string{"a"}}}, `steps[0] (a).needs[0]: a step cannot need itself`},
		{"twice", []Step{{Name: "a"}, {Name: "b", Needs: []string{"a", "a"}}}, `steps[1] (b).needs[1]: "a" is listed twice`},
		{"always without timeout", []Step{{Name: "unlock", Always: true}}, `steps[0] (unlock): an Always step needs a Timeout (it runs even after cancellation, so it must be bounded)`},
		{"negative timeout", []Step{{Name: "a", Timeout: -1}}, `steps[0] (a): timeout must not be negative`},
		{"cycle", []Step{{Name: "a", Needs: []string{"c"}}, {Name: "b", Needs: []string{"a"}}, {Name: "c", Needs: []string{"b"}}, {Name: "d"}},
			"cycle: a needs c needs b needs a"},
		{"several at once", []Step{{Name: "a", Needs: []string{"x"}}, {Name: "a"}},
			"steps[1] (a): name \"a\" is already steps[0]\nsteps[0] (a).needs[0]: unknown step \"x\"; did you mean \"a\"?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.steps...)
			assert.EqualError(t, err, tt.want)
		})
	}
}

func TestStages(t *testing.T) {
	g, err := New(
		Step{Name: "lock"},
		Step{Name: "build-backend", Needs: []string{"lock"}},
		Step{Name: "build-frontend", Needs: []string{"lock"}},
		Step{Name: "rehearse", Needs: []string{"build-backend"}},
		Step{Name: "switch", Needs: []string{"rehearse", "build-frontend"}},
		Step{Name: "unlock", Needs: []string{"switch"}, Always: true, Timeout: time.Second},
	)
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"lock"}, {"build-backend", "build-frontend"}, {"rehearse"}, {"switch"}, {"unlock"}}, g.Stages())
	assert.Equal(t, 6, g.Len())
}
