package config

import (
	"fmt"
	"os"
)

// Format is the kind of file that was read.
type Format string

// Formats Load understands.
const (
	FormatNative Format = "native"
	FormatLegacy Format = "lawsker-legacy"
)

// Loaded is a configuration ready to use, with where it came from.
type Loaded struct {
	Config *Config
	Format Format
	// Notes explains what a legacy import assumed (for the user to check).
	Notes []string
}

// ImportOptions fill in what Lawsker's legacy file does not say.
type ImportOptions struct {
	App   string // default "lawsker"
	Host  string // default "127.0.0.1": the old toolkit ran on the server itself
	User  string // default "deploy"
	Image string // default "127.0.0.1:5000/<app>/backend"
	// Verb is how the notes name the converting command and its flags:
	// "config import" (the CLI, the default) or "config-import" (Dagger).
	Verb string
}

// LoadFile reads and validates a configuration file. Lawsker's legacy
// deployment_config.json is recognised and converted in memory.
func LoadFile(path string, opts ImportOptions) (*Loaded, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w (pass --config with the path of your deploy.json)", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("config: %s is a folder; pass --config with the path of a deploy.json file", path)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("config: %s is %d bytes; a configuration file is at most %d bytes", path, st.Size(), MaxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, opts)
}

// Parse reads and validates a configuration from bytes (native or legacy).
// The error, when not nil, is Problems listing everything wrong.
func Parse(data []byte, opts ImportOptions) (*Loaded, error) {
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	if root.kind != kindObject {
		return nil, Problems{{Line: root.line, Message: fmt.Sprintf("the file must hold a JSON object, got %s", root.kind)}}
	}
	if isLegacy(root) {
		return parseLegacy(root, opts)
	}
	cfg, err := decodeNative(root)
	if err != nil {
		return nil, err
	}
	return &Loaded{Config: cfg, Format: FormatNative}, nil
}

func decodeNative(root *node) (*Config, error) {
	var c collector
	cfg := &Config{}
	decodeInto(root, cfg, &c)
	if v, ok := root.lookup("version"); ok && v.kind == kindNumber && string(v.num) != fmt.Sprint(CurrentVersion) {
		// Replace the range message with one that says what to do.
		c.list = dropPath(c.list, "version")
		c.add("version", v.line, "version %s is not one this release reads (it reads %d); upgrade lawsker-deploy or convert the file", v.num, CurrentVersion)
	}
	if len(c.list) == 0 {
		lines := map[string]int{}
		pathLines(root, "", lines)
		cfg.validate(&c, lines)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func dropPath(ps Problems, path string) Problems {
	out := ps[:0]
	for _, p := range ps {
		if p.Path != path {
			out = append(out, p)
		}
	}
	return out
}

// pathLines records the line of every value in the tree by path.
func pathLines(n *node, path string, out map[string]int) {
	out[path] = n.line
	for _, m := range n.members {
		pathLines(m.val, joinPath(path, m.key), out)
	}
	for i, item := range n.items {
		pathLines(item, indexPath(path, i), out)
	}
}

// Validate checks a configuration built in code against the field and
// cross-field rules, as Parse does for files, and fills unset (zero) fields
// with their defaults. On error c is unchanged.
func (c *Config) Validate() error {
	data, err := Marshal(c)
	if err != nil {
		return err
	}
	root, err := parseTree(data)
	if err != nil {
		return err
	}
	cfg, err := decodeNative(root)
	if err != nil {
		// Lines of the re-encoded form mean nothing to the caller.
		if ps, ok := err.(Problems); ok {
			for i := range ps {
				ps[i].Line = 0
			}
		}
		return err
	}
	*c = *cfg
	return nil
}
