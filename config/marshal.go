package config

import (
	"bytes"
	"encoding/json"
)

// SchemaURL is what written files put in "$schema" (relative to the
// repository; editors resolve it against the file's folder when copied).
const SchemaURL = "https://raw.githubusercontent.com/lawsker/lawsker-deploy/main/schema/deploy.schema.json"

// Marshal writes a configuration as indented JSON. Secret fields hold only
// their references, so the output never carries a secret.
func Marshal(c *Config) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
