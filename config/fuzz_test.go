package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse: whatever the bytes, Parse never panics, and it either returns a
// configuration that passes Validate or Problems whose every entry says
// something.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version": 1, "app": "; rm -rf /", "targets": [{"name": "$(x)", "host": "a\nb"}]}`))
	for _, p := range []string{"../examples/local.deploy.json", "testdata/lawsker_deployment_config.json"} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(data, ImportOptions{})
		if err != nil {
			ps, ok := err.(Problems)
			if !ok || len(ps) == 0 {
				t.Fatalf("error is not Problems: %T %v", err, err)
			}
			for _, p := range ps {
				if strings.TrimSpace(p.Message) == "" {
					t.Fatalf("empty problem message in %v", ps)
				}
			}
			return
		}
		if l.Config == nil {
			t.Fatal("nil config without error")
		}
		if err := l.Config.Validate(); err != nil {
			t.Fatalf("loaded config fails Validate: %v", err)
		}
		// What the loader accepts as a native file, the published schema
		// (what editors check) accepts too.
		if l.Format == FormatNative {
			if err := schemaAccepts(t, data); err != nil {
				t.Fatalf("the loader accepts a file the schema refuses: %v\n%s", err, data)
			}
		}
	})
}
