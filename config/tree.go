package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxFileSize bounds a configuration file; a larger one is refused unread.
const MaxFileSize = 1 << 20

// maxDepth bounds nesting; the schema is 5 levels deep, so anything deeper
// is a broken or hostile file.
const maxDepth = 32

type nodeKind int

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k nodeKind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// node is one JSON value with the line it starts on, so problems found after
// parsing can still point into the file.
type node struct {
	kind    nodeKind
	line    int
	str     string
	num     json.Number
	boolean bool
	items   []*node
	members []member
}

type member struct {
	key  string
	line int
	val  *node
}

func (n *node) lookup(key string) (*node, bool) {
	for _, m := range n.members {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// parseTree reads one JSON document into a node tree. Syntax errors, trailing
// data, duplicate keys and excessive nesting are reported with line numbers.
func parseTree(data []byte) (*node, error) {
	if len(data) > MaxFileSize {
		return nil, Problems{{Message: fmt.Sprintf("file is %d bytes; a configuration file is at most %d bytes", len(data), MaxFileSize)}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Problems{{Message: "file is empty; it must hold a JSON object"}}
	}
	p := &treeParser{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	root, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, Problems{{Line: p.line(), Message: "unexpected data after the top-level JSON value"}}
	}
	return root, nil
}

type treeParser struct {
	data []byte
	dec  *json.Decoder
	// Line counting is incremental: offsets only grow, so each newline is
	// counted once (not once per token, which is quadratic on big files).
	countedTo int64
	lines     int
}

func (p *treeParser) line() int { return p.lineAt(p.dec.InputOffset()) }

func (p *treeParser) lineAt(offset int64) int {
	offset = min(offset, int64(len(p.data)))
	if offset < p.countedTo {
		return lineAt(p.data, offset)
	}
	p.lines += bytes.Count(p.data[p.countedTo:offset], []byte{'\n'})
	p.countedTo = offset
	return p.lines + 1
}

func lineAt(data []byte, offset int64) int {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	return bytes.Count(data[:offset], []byte{'\n'}) + 1
}

func (p *treeParser) syntax(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := lineAt(p.data, se.Offset)
		col := se.Offset - int64(bytes.LastIndexByte(p.data[:min(se.Offset, int64(len(p.data)))], '\n'))
		return Problems{{Line: line, Message: fmt.Sprintf("malformed JSON at column %d: %s", col, se.Error())}}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Problems{{Line: p.line(), Message: "malformed JSON: the file ends before the value is complete"}}
	}
	return Problems{{Line: p.line(), Message: "malformed JSON: " + err.Error()}}
}

func (p *treeParser) value(depth int) (*node, error) {
	// Skip whitespace so the line is where the value starts, not where the
	// previous token ended.
	line := p.nextLine()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	n := &node{line: line}
	switch t := tok.(type) {
	case nil:
		n.kind = kindNull
	case bool:
		n.kind, n.boolean = kindBool, t
	case json.Number:
		n.kind, n.num = kindNumber, t
	case string:
		n.kind, n.str = kindString, t
	case json.Delim:
		if depth >= maxDepth {
			return nil, Problems{{Line: line, Message: fmt.Sprintf("nesting deeper than %d levels", maxDepth)}}
		}
		switch t {
		case '[':
			n.kind = kindArray
			for p.dec.More() {
				item, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, item)
			}
		case '{':
			n.kind = kindObject
			seen := map[string]int{}
			for p.dec.More() {
				keyLine := p.nextLine()
				kt, err := p.dec.Token()
				if err != nil {
					return nil, p.syntax(err)
				}
				key, _ := kt.(string)
				val, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				if first, dup := seen[key]; dup {
					return nil, Problems{{Line: val.line, Message: fmt.Sprintf("key %s appears twice (first on line %d); JSON parsers disagree on which wins, so write it once", quote(key), first)}}
				}
				seen[key] = val.line
				n.members = append(n.members, member{key: key, line: keyLine, val: val})
			}
		}
		if _, err := p.dec.Token(); err != nil { // closing delimiter
			return nil, p.syntax(err)
		}
	}
	return n, nil
}

// nextLine is the line of the next token: the decoder's offset is the end of
// the previous one, so separators and white space are skipped first.
func (p *treeParser) nextLine() int {
	off := p.dec.InputOffset()
	for off < int64(len(p.data)) && isSeparator(p.data[off]) {
		off++
	}
	return p.lineAt(off)
}

func isSeparator(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ':'
}
