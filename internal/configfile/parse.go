package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// IsJSON reports whether data begins, after white space, with '{' or '['.
func IsJSON(data []byte) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && (data[0] == '{' || data[0] == '[')
}

// A SyntaxError is data that is neither valid JSON nor valid YAML.
type SyntaxError struct {
	Line int    // 0 when unknown
	JSON bool   // data looked like JSON and is reported as JSON
	Msg  string // what is wrong, never quoting the data
}

func (e *SyntaxError) Error() string {
	if e.JSON {
		if e.Line > 0 {
			return fmt.Sprintf("line %d: not valid JSON: %s", e.Line, e.Msg)
		}
		return "not valid JSON: " + e.Msg
	}
	return "not valid YAML or JSON: " + e.Msg
}

// Parse reads data as one document and returns its root node: a null scalar for an empty
// document. Data that begins with '{' or '[' is read as JSON; if it is not valid JSON but
// valid YAML (a YAML flow collection), as YAML. Other data is read as YAML. Errors are
// *SyntaxError.
func Parse(data []byte) (*yaml.Node, error) {
	if IsJSON(data) {
		n, jsonErr := parseJSON(data)
		if jsonErr == nil {
			return n, nil
		}
		if n, err := parseYAML(data); err == nil {
			return n, nil
		}
		return nil, jsonErr
	}
	return parseYAML(data)
}

// parseYAML reads one YAML document (yaml.Unmarshal would ignore anything after the first).
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, &SyntaxError{Msg: err.Error()}
	}
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
	case err != nil:
		return nil, &SyntaxError{Msg: err.Error()}
	default:
		return nil, &SyntaxError{Line: extra.Line, Msg: fmt.Sprintf("line %d: a second document; the file must hold one", extra.Line)}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root := doc.Content[0]
		written, expanded := nodeCounts(root)
		if expanded > maxExpansion*written+1024 {
			return nil, &SyntaxError{Msg: fmt.Sprintf("its aliases expand %d values to %d (at most %d times as many are read)", written, expanded, maxExpansion)}
		}
		return root, nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: 1, Column: 1}, nil
}

// maxExpansion bounds how much aliases may grow a document when it is decoded: a small file
// whose aliases name a large mapping many times would otherwise make decoding (and its
// errors) grow with the square of the file's size.
const maxExpansion = 16

// nodeCounts returns the nodes of the tree under n as written, and as decoding visits them,
// each alias standing for its anchor's whole tree.
func nodeCounts(n *yaml.Node) (written, expanded int) {
	sizes := map[*yaml.Node]int{} // an anchored node's expanded size, counted once
	var walk func(n *yaml.Node) int
	walk = func(n *yaml.Node) int {
		if n.Kind == yaml.AliasNode {
			written++
			if n.Alias == nil {
				return 1
			}
			if size, ok := sizes[n.Alias]; ok {
				return size
			}
			return 1 // the anchor is outside what was walked yet; yaml.v3 refuses forward aliases
		}
		written++
		size := 1
		for _, c := range n.Content {
			size += walk(c)
			if size > 1<<30 {
				size = 1 << 30 // no overflow for trees of many nested aliases
			}
		}
		if n.Anchor != "" {
			sizes[n] = size
		}
		return size
	}
	expanded = walk(n)
	return written, expanded
}

// jsonReader reads JSON tokens with the line and column each begins at.
type jsonReader struct {
	dec       *json.Decoder
	data      []byte
	off       int64 // lines are counted up to here
	line      int
	lineStart int64 // offset of the first byte of line
}

// next returns the next token and where it is. A token never spans lines, so the line its
// end is on is its line; its column is found by scanning back from its end.
func (r *jsonReader) next() (json.Token, int, int, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, 0, 0, err
	}
	end := r.dec.InputOffset()
	if i := bytes.LastIndexByte(r.data[r.off:end], '\n'); i >= 0 {
		r.line += bytes.Count(r.data[r.off:end], []byte{'\n'})
		r.lineStart = r.off + int64(i) + 1
	}
	r.off = end
	start := end - 1
	if _, ok := tok.(json.Delim); !ok {
		start = r.tokenStart(end)
	}
	return tok, r.line, int(start-r.lineStart) + 1, nil
}

// tokenStart finds where the scalar token that ends at end begins.
func (r *jsonReader) tokenStart(end int64) int64 {
	i := end - 1
	if r.data[i] != '"' {
		for i > r.lineStart && !bytes.ContainsRune([]byte(" \t\r\n,:[{"), rune(r.data[i-1])) {
			i--
		}
		return i
	}
	for i--; i > r.lineStart; i-- {
		if r.data[i] == '"' {
			// A quote preceded by an odd number of backslashes is escaped.
			n := 0
			for j := i - 1; j >= r.lineStart && r.data[j] == '\\'; j-- {
				n++
			}
			if n%2 == 0 {
				return i
			}
		}
	}
	return i
}

// parseJSON reads a JSON document into the nodes YAML would give for it.
func parseJSON(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers keep their text, resolved as YAML resolves it
	r := &jsonReader{dec: dec, data: data, line: 1}
	tok, line, col, err := r.next()
	if err != nil {
		return nil, jsonSyntaxError(data, err)
	}
	n, err := r.value(tok, line, col)
	if err != nil {
		return nil, jsonSyntaxError(data, err)
	}
	// Only white space may follow.
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return n, nil
	case err == nil:
		return nil, jsonSyntaxError(data, errors.New("more than one top-level value"))
	default:
		return nil, jsonSyntaxError(data, err)
	}
}

// value converts the value that begins with tok, reading the rest of an array or object.
func (r *jsonReader) value(tok json.Token, line, col int) (*yaml.Node, error) {
	n := &yaml.Node{Line: line, Column: col}
	switch t := tok.(type) {
	case string:
		n.Kind, n.Tag, n.Style, n.Value = yaml.ScalarNode, "!!str", yaml.DoubleQuotedStyle, t
	case json.Number:
		n.Kind, n.Value = yaml.ScalarNode, string(t)
		n.Tag = n.ShortTag() // as YAML resolves a plain scalar
	case bool:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!bool", "false"
		if t {
			n.Value = "true"
		}
	case nil:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!null", "null"
	case json.Delim:
		n.Kind, n.Tag, n.Style = yaml.SequenceNode, "!!seq", yaml.FlowStyle
		end := json.Delim(']')
		if t == '{' {
			n.Kind, n.Tag, end = yaml.MappingNode, "!!map", '}'
		}
		for {
			tok, line, col, err := r.next()
			if err != nil {
				return nil, err
			}
			if tok == end {
				break
			}
			item, err := r.value(tok, line, col)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, item)
			if n.Kind == yaml.MappingNode {
				tok, line, col, err := r.next()
				if err != nil {
					return nil, err
				}
				v, err := r.value(tok, line, col)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
		}
	}
	return n, nil
}

// jsonSyntaxError describes the syntax error err found in data, with its line. The offsets
// in the decoder's errors count from the start of the token being read, so data is scanned
// again, as a whole, to find the line.
func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(json.Unmarshal(data, &struct{}{}), &se) {
		off := min(max(se.Offset-1, 0), int64(len(data))) // the offset is just past the bad byte
		line := 1 + bytes.Count(data[:off], []byte{'\n'})
		return &SyntaxError{JSON: true, Line: line, Msg: withoutChar(se.Error())}
	}
	return &SyntaxError{JSON: true, Msg: withoutChar(err.Error())}
}

// withoutChar drops the character that an encoding/json syntax error quotes, as in
// "invalid character 'x' in string literal": it may be part of a secret.
func withoutChar(msg string) string {
	const prefix = "invalid character "
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok || len(rest) < 2 {
		return msg
	}
	// The character is quoted as 'c', or '\'' for a quote; find the closing "' ".
	if i := strings.Index(rest[2:], "' "); i >= 0 {
		return prefix + rest[2+i+2:]
	}
	return msg
}
