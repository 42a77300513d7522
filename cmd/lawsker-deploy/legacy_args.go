package main

import (
	"fmt"
	"slices"
	"strings"
)

// legacyArgs maps the old toolkit's invocations (deploy.py --action X
// with --snapshot-id, --deployment-id, --description, --base-url,
// --verbose) to the native command line, and says the native form in one
// line. Arguments without --action are returned as they are.
func legacyArgs(args []string) ([]string, string, error) {
	action, found := "", false
	var rest []string
	legacy := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			name = ""
		}
		switch name {
		case "action", "snapshot-id", "deployment-id", "description", "base-url":
			if !hasValue {
				if i+1 >= len(args) {
					return nil, "", usageError{fmt.Sprintf("--%s needs a value", name)}
				}
				i++
				value = args[i]
			}
			if name == "action" {
				action, found = value, true
			} else {
				legacy[name] = value
			}
		default:
			rest = append(rest, a)
		}
	}
	if !found {
		return args, "", nil
	}
	var native []string
	switch action {
	case "deploy":
		native = []string{"deploy"}
	case "verify":
		native = []string{"verify"}
		if u, ok := legacy["base-url"]; ok {
			native = append(native, "--base-url", u)
		}
	case "rollback":
		switch {
		case legacy["snapshot-id"] != "":
			native = []string{"rollback", "--snapshot", legacy["snapshot-id"]}
		case legacy["deployment-id"] != "":
			native = []string{"rollback", "--deployment", legacy["deployment-id"]}
		default:
			native = []string{"rollback", "--previous"}
		}
	case "list-snapshots":
		native = []string{"snapshot", "list"}
	case "create-snapshot":
		native = []string{"snapshot", "create"}
		if d, ok := legacy["description"]; ok {
			native = append(native, "--description", d)
		}
	default:
		return nil, "", usageError{fmt.Sprintf("--action %q is not one of the old toolkit's (deploy, verify, rollback, list-snapshots, create-snapshot)", action)}
	}
	allowed := map[string][]string{"verify": {"base-url"}, "rollback": {"snapshot-id", "deployment-id"}, "create-snapshot": {"description"}}
	for name := range legacy {
		if !slices.Contains(allowed[action], name) {
			return nil, "", usageError{fmt.Sprintf("--%s does not go with --action %s", name, action)}
		}
	}
	native = append(native, rest...)
	return native, fmt.Sprintf("the old toolkit's --action %s is `lawsker-deploy %s`", action, strings.Join(native, " ")), nil
}
