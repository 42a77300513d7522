package config

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// Schema returns the JSON Schema (draft 2020-12) of the native format,
// generated from the Go types and their tags, so the schema and the loader
// cannot disagree.
func Schema() ([]byte, error) {
	s := typeSchema(reflect.TypeFor[Config](), fieldRules{})
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaURL
	s["title"] = "lawsker-deploy configuration"
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type obj = map[string]any

var (
	durationType  = reflect.TypeFor[Duration]()
	secretRefType = reflect.TypeFor[SecretRef]()
)

func typeSchema(t reflect.Type, r fieldRules) obj {
	switch t {
	case durationType:
		return obj{"type": "string", "pattern": DurationPattern, "examples": []string{"30s", "10m"}}
	case secretRefType:
		return obj{"type": "string", "pattern": SecretRefPattern, "examples": []string{"env:DB_PASSWORD", "file:/run/secrets/db_password"}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeSchema(t.Elem(), r)
	case reflect.Struct:
		props := obj{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := jsonName(f)
			if name == "" {
				continue
			}
			fr := rulesOf(f)
			p := typeSchema(f.Type, fr)
			if doc := f.Tag.Get("doc"); doc != "" {
				p["description"] = doc
			}
			if fr.def != "" {
				var v any
				if err := json.Unmarshal([]byte(fr.def), &v); err != nil {
					panic("config: bad default on " + f.Name)
				}
				p["default"] = v
			}
			if fr.required {
				required = append(required, name)
			}
			props[name] = p
		}
		s := obj{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	case reflect.String:
		s := obj{"type": "string", "pattern": `^[^\x00-\x1f\x7f]*$`}
		if len(r.enum) > 0 {
			s["enum"] = r.enum
			delete(s, "pattern")
		} else if r.format != "" {
			s["pattern"] = formats[r.format].pattern
		}
		return s
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Float64:
		s := obj{"type": "number"}
		if t.Kind() == reflect.Int {
			s["type"] = "integer"
		}
		if r.min != nil {
			s["minimum"] = jsonNumber(*r.min)
		}
		if r.max != nil {
			s["maximum"] = jsonNumber(*r.max)
		}
		return s
	case reflect.Slice:
		s := obj{"type": "array", "items": typeSchema(t.Elem(), fieldRules{format: r.items, enum: r.enum})}
		if r.minItems > 0 {
			s["minItems"] = r.minItems
		}
		return s
	case reflect.Map:
		s := obj{"type": "object", "additionalProperties": typeSchema(t.Elem(), fieldRules{})}
		if r.keys != "" {
			s["propertyNames"] = obj{"pattern": formats[r.keys].pattern}
		}
		return s
	}
	panic("config: no schema for " + t.String())
}

func jsonNumber(x float64) json.Number {
	return json.Number(strings.TrimSuffix(strconv.FormatFloat(x, 'f', -1, 64), ".0"))
}
