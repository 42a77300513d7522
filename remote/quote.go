package remote

import "strings"

// Quote renders argv as one POSIX shell command line: every argument in
// single quotes (a single quote inside becomes '\”), so no value — a
// config string, a path, a message — is ever interpreted by the remote
// shell. It is the only way a command for a target becomes a string.
func Quote(argv ...string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = quoteArg(a)
	}
	return strings.Join(parts, " ")
}

func quoteArg(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+%") == "" {
		return s // nothing the shell would interpret
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
