package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/lawsker/lawsker-deploy/internal/textdist"
)

// decodeInto fills v (a pointer to a struct) from the tree, recording every
// problem rather than stopping at the first.
func decodeInto(root *node, v any, c *collector) {
	d := &decoder{c: c}
	d.value("", root, reflect.ValueOf(v).Elem(), fieldRules{})
}

type decoder struct{ c *collector }

// fieldRules are the tag rules of the field a value sits in.
type fieldRules struct {
	required bool
	def      string
	min, max *float64
	minItems int
	enum     []string
	format   string
	items    string
	keys     string
}

func rulesOf(f reflect.StructField) fieldRules {
	r := fieldRules{
		required: f.Tag.Get("required") == "true",
		def:      f.Tag.Get("default"),
		format:   f.Tag.Get("format"),
		items:    f.Tag.Get("items"),
		keys:     f.Tag.Get("keys"),
	}
	if e := f.Tag.Get("enum"); e != "" {
		r.enum = strings.Split(e, "|")
	}
	parse := func(tag string) *float64 {
		s := f.Tag.Get(tag)
		if s == "" {
			return nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			panic(fmt.Sprintf("config: bad %s tag on %s: %v", tag, f.Name, err))
		}
		return &x
	}
	r.min, r.max = parse("min"), parse("max")
	if s := f.Tag.Get("minItems"); s != "" {
		r.minItems, _ = strconv.Atoi(s)
	}
	for _, name := range []string{r.format, r.items, r.keys} {
		if name != "" && formats[name] == nil {
			panic(fmt.Sprintf("config: unknown format %q on %s", name, f.Name))
		}
	}
	return r
}

// jsonName returns the key of a struct field, or "" for fields not in JSON.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

var stringDecoderType = reflect.TypeFor[stringDecoder]()

func (d *decoder) value(path string, n *node, v reflect.Value, r fieldRules) {
	if v.CanAddr() && v.Addr().Type().Implements(stringDecoderType) {
		if n.kind != kindString {
			d.c.add(path, n.line, "must be a string, got %s", n.kind)
			return
		}
		if err := v.Addr().Interface().(stringDecoder).decodeString(n.str); err != nil {
			d.c.add(path, n.line, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.kind == kindNull {
			d.c.add(path, n.line, "is null; leave the key out when the section is not used")
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(path, n, p.Elem(), r)
		v.Set(p)
	case reflect.Struct:
		d.object(path, n, v)
	case reflect.String:
		if n.kind != kindString {
			d.c.add(path, n.line, "must be a string, got %s", n.kind)
			return
		}
		if d.checkString(path, n.line, n.str, r.format, r.enum) {
			v.SetString(n.str)
		}
	case reflect.Bool:
		if n.kind != kindBool {
			d.c.add(path, n.line, "must be true or false, got %s", n.kind)
			return
		}
		v.SetBool(n.boolean)
	case reflect.Int:
		if n.kind != kindNumber {
			d.c.add(path, n.line, "must be a whole number, got %s", n.kind)
			return
		}
		i, err := strconv.ParseInt(string(n.num), 10, 64)
		if err != nil {
			d.c.add(path, n.line, "must be a whole number, got %s", n.num)
			return
		}
		if d.checkRange(path, n.line, float64(i), string(n.num), r) {
			v.SetInt(i)
		}
	case reflect.Float64:
		if n.kind != kindNumber {
			d.c.add(path, n.line, "must be a number, got %s", n.kind)
			return
		}
		f, err := strconv.ParseFloat(string(n.num), 64)
		if err != nil || math.IsInf(f, 0) {
			d.c.add(path, n.line, "must be a number in range, got %s", n.num)
			return
		}
		if d.checkRange(path, n.line, f, string(n.num), r) {
			v.SetFloat(f)
		}
	case reflect.Slice:
		if n.kind != kindArray {
			d.c.add(path, n.line, "must be an array, got %s", n.kind)
			return
		}
		if len(n.items) < r.minItems {
			d.c.add(path, n.line, "must list at least %d item(s)", r.minItems)
		}
		s := reflect.MakeSlice(v.Type(), len(n.items), len(n.items))
		for i, item := range n.items {
			d.value(indexPath(path, i), item, s.Index(i), fieldRules{format: r.items, enum: r.enum})
		}
		v.Set(s)
	case reflect.Map:
		if n.kind != kindObject {
			d.c.add(path, n.line, "must be an object, got %s", n.kind)
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.members))
		for _, mem := range n.members {
			kp := joinPath(path, mem.key)
			if r.keys != "" && !formats[r.keys].ok(mem.key) {
				d.c.add(path, mem.line, "key %s %s", quote(mem.key), formats[r.keys].says)
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.value(kp, mem.val, ev, fieldRules{})
			m.SetMapIndex(reflect.ValueOf(mem.key), ev)
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("config: field kind %s at %s is not supported", v.Kind(), path))
	}
}

// checkString applies the rules every string obeys (no control characters)
// and the field's format or enum. It reports whether the value is good.
func (d *decoder) checkString(path string, line int, s, format string, enum []string) bool {
	for _, ch := range s {
		if ch < 0x20 || ch == 0x7f {
			d.c.add(path, line, "must not contain control characters (newline, tab, NUL...), got %s", quote(s))
			return false
		}
	}
	if len(enum) > 0 {
		for _, e := range enum {
			if s == e {
				return true
			}
		}
		d.c.add(path, line, "must be one of %s, got %s", strings.Join(quoteAll(enum), ", "), quote(s))
		return false
	}
	if format != "" && !formats[format].ok(s) {
		d.c.add(path, line, "%s, got %s", formats[format].says, quote(s))
		return false
	}
	return true
}

func (d *decoder) checkRange(path string, line int, x float64, raw string, r fieldRules) bool {
	switch {
	case r.min != nil && r.max != nil && (x < *r.min || x > *r.max):
		d.c.add(path, line, "must be %s-%s, got %s", num(*r.min), num(*r.max), raw)
	case r.min != nil && x < *r.min:
		d.c.add(path, line, "must be at least %s, got %s", num(*r.min), raw)
	case r.max != nil && x > *r.max:
		d.c.add(path, line, "must be at most %s, got %s", num(*r.max), raw)
	default:
		return true
	}
	return false
}

func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func (d *decoder) object(path string, n *node, v reflect.Value) {
	if n.kind != kindObject {
		d.c.add(path, n.line, "must be an object, got %s", n.kind)
		return
	}
	t := v.Type()
	known := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		if name := jsonName(t.Field(i)); name != "" {
			known[name] = i
		}
	}
	for _, mem := range n.members {
		if _, ok := known[mem.key]; !ok {
			d.c.add(joinPath(path, mem.key), mem.line, "unknown key%s", suggest(mem.key, known))
		}
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		r := rulesOf(f)
		fp := joinPath(path, name)
		if child, ok := n.lookup(name); ok {
			if child.kind == kindNull && r.required {
				d.c.add(fp, child.line, "is required and must not be null")
				continue
			}
			d.value(fp, child, v.Field(i), r)
			continue
		}
		switch {
		case r.required:
			d.c.add(fp, n.line, "is required")
		case r.def != "":
			def, err := parseTree([]byte(r.def))
			if err != nil {
				panic(fmt.Sprintf("config: bad default on %s: %v", fp, err))
			}
			d.value(fp, def, v.Field(i), r)
		case f.Type.Kind() == reflect.Struct:
			// A section that is always present: take its fields' defaults.
			d.object(fp, &node{kind: kindObject, line: n.line}, v.Field(i))
		}
	}
}

// suggest names the closest known key when one is close enough, else lists
// them all.
func suggest(key string, known map[string]int) string {
	names := make([]string, 0, len(known))
	for k := range known {
		if k != "$schema" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if best := textdist.Closest(strings.ToLower(key), names); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; known keys: " + strings.Join(names, ", ")
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
