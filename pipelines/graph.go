package pipelines

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/lawsker/lawsker-deploy/internal/textdist"
)

// Graph is a validated DAG of steps.
type Graph struct {
	steps      []Step
	index      map[string]int
	needs      [][]int // needs[i]: indexes step i waits for
	dependents [][]int // dependents[i]: indexes that wait for step i
	stage      []int   // stage[i]: longest chain of needs before step i
	rank       []int   // rank[i]: longest chain of dependents after step i
}

var stepName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:/-]{0,99}$`)

// New validates the steps and builds the graph. Every problem is reported
// (joined), each with its place: `steps[2] (deploy).needs[0]: unknown step
// "biuld"; did you mean "build"?`; cycles are shown as a path.
func New(steps ...Step) (*Graph, error) {
	g := &Graph{steps: slices.Clone(steps), index: map[string]int{}}
	var errs []error
	where := func(i int) string {
		if stepName.MatchString(steps[i].Name) {
			return fmt.Sprintf("steps[%d] (%s)", i, steps[i].Name)
		}
		return fmt.Sprintf("steps[%d]", i)
	}
	for i, s := range steps {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is empty", where(i)))
		case !stepName.MatchString(s.Name):
			errs = append(errs, fmt.Errorf("%s: name %q must be lowercase letters, digits and -_.:/ (at most 100)", where(i), s.Name))
		default:
			if j, dup := g.index[s.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: name %q is already steps[%d]", where(i), s.Name, j))
				continue
			}
			g.index[s.Name] = i
		}
		if s.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s: timeout must not be negative", where(i)))
		}
		if s.Always && s.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("%s: an Always step needs a Timeout (it runs even after cancellation, so it must be bounded)", where(i)))
		}
		if s.Retry.Attempts < 0 {
			errs = append(errs, fmt.Errorf("%s: retry attempts must not be negative", where(i)))
		}
	}
	g.needs = make([][]int, len(steps))
	g.dependents = make([][]int, len(steps))
	for i, s := range steps {
		seen := map[int]bool{}
		for k, need := range s.Needs {
			j, ok := g.index[need]
			switch {
			case need == s.Name:
				errs = append(errs, fmt.Errorf("%s.needs[%d]: a step cannot need itself", where(i), k))
			case !ok:
				errs = append(errs, fmt.Errorf("%s.needs[%d]: unknown step %q%s", where(i), k, need, closest(need, g.index)))
			case seen[j]:
				errs = append(errs, fmt.Errorf("%s.needs[%d]: %q is listed twice", where(i), k, need))
			default:
				seen[j] = true
				g.needs[i] = append(g.needs[i], j)
				g.dependents[j] = append(g.dependents[j], i)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cycle := g.findCycle(); cycle != nil {
		return nil, fmt.Errorf("cycle: %s", strings.Join(cycle, " needs "))
	}
	g.computeLevels()
	return g, nil
}

// findCycle returns one cycle as step names (first name repeated at the
// end), or nil.
func (g *Graph) findCycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(g.steps))
	var stack []int
	var found []string
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, i)
		for _, j := range g.needs[i] {
			if color[j] == grey {
				start := slices.Index(stack, j)
				for _, k := range stack[start:] {
					found = append(found, g.steps[k].Name)
				}
				found = append(found, g.steps[j].Name)
				return true
			}
			if color[j] == white && visit(j) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range g.steps {
		if color[i] == white && visit(i) {
			return found
		}
	}
	return nil
}

// computeLevels assigns stages (longest chain before) and ranks (longest
// chain after), over a topological order.
func (g *Graph) computeLevels() {
	n := len(g.steps)
	g.stage, g.rank = make([]int, n), make([]int, n)
	order := g.topo()
	for _, i := range order {
		for _, j := range g.needs[i] {
			g.stage[i] = max(g.stage[i], g.stage[j]+1)
		}
	}
	for k := n - 1; k >= 0; k-- {
		i := order[k]
		for _, j := range g.dependents[i] {
			g.rank[i] = max(g.rank[i], g.rank[j]+1)
		}
	}
}

func (g *Graph) topo() []int {
	indeg := make([]int, len(g.steps))
	for i := range g.steps {
		indeg[i] = len(g.needs[i])
	}
	var order, queue []int
	for i, d := range indeg {
		if d == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, i)
		for _, j := range g.dependents[i] {
			if indeg[j]--; indeg[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	return order
}

// Len returns the number of steps.
func (g *Graph) Len() int { return len(g.steps) }

// Steps returns the steps in the order they were given.
func (g *Graph) Steps() []Step { return slices.Clone(g.steps) }

// Stages groups step names by stage: stage 0 needs nothing, stage k needs
// something in stage k-1. Steps of one stage can run in parallel.
func (g *Graph) Stages() [][]string {
	var out [][]string
	for i, s := range g.steps {
		for len(out) <= g.stage[i] {
			out = append(out, nil)
		}
		out[g.stage[i]] = append(out[g.stage[i]], s.Name)
	}
	return out
}

func closest(name string, known map[string]int) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	if best := textdist.Closest(name, names); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}
