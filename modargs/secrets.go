package modargs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/lawsker/lawsker-deploy/config"
)

// Secret is one --secrets value: the URI it was loaded from (env://NAME,
// file://PATH) and its value.
type Secret struct {
	URI   string
	Value string
}

// Resolver feeds the configuration's secret references from the secrets
// passed, and only from them (a function's container is not the caller's
// machine: its environment and files are not the caller's). Every secret
// must stand for a reference: one that stands for none is a mistake (a
// typo, a path written another way), refused with the references and the
// exact --secrets forms that would match them. onResolve sees every value
// (to mask it) before it can reach any output.
func Resolver(cfg *config.Config, secrets []Secret, onResolve func(string)) (*config.Resolver, error) {
	res := &config.Resolver{Provided: map[string]string{}, Sealed: true, OnResolve: onResolve}
	keys := make([]string, len(secrets))
	for i, s := range secrets {
		ref, err := config.RefForURI(s.URI)
		if err != nil {
			return nil, fmt.Errorf("--secrets[%d]: %w", i, err)
		}
		if onResolve != nil {
			onResolve(s.Value)
		}
		keys[i] = string(ref)
		res.Provided[keys[i]] = s.Value
	}
	if cfg == nil {
		return res, nil
	}
	refs := cfg.AllSecretRefs()
	used := map[string]bool{}
	for _, u := range refs {
		k, err := res.ProvidedFor(u.Ref)
		if err != nil {
			return nil, fmt.Errorf("--secrets: %s: %w", u.Path, err)
		}
		if k != "" {
			used[k] = true
		}
	}
	var unmatched []string
	for i, k := range keys {
		if !used[k] {
			unmatched = append(unmatched, fmt.Sprintf("--secrets[%d] %s", i, secrets[i].URI))
		}
	}
	if len(unmatched) > 0 {
		return nil, fmt.Errorf("%s stands for no secret reference of the configuration; %s", strings.Join(unmatched, " and "), Forms(refs))
	}
	return res, nil
}

// Forms lists the references and the --secrets form that passes each.
func Forms(refs []config.SecretUse) string {
	if len(refs) == 0 {
		return "the configuration references no secret"
	}
	seen := map[config.SecretRef]bool{}
	var lines []string
	for _, u := range refs {
		if seen[u.Ref] {
			continue
		}
		seen[u.Ref] = true
		lines = append(lines, fmt.Sprintf("%s (%s): --secrets=%s", u.Ref, u.Path, u.Ref.URI()))
	}
	sort.Strings(lines)
	return "its references and the form that passes each: " + strings.Join(lines, "; ")
}
