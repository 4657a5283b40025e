package orgs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// JSON files are read with encoding/json rather than as YAML: go-yaml rejects the JSON
// escapes "\/" and UTF-16 surrogate pairs (go-yaml/yaml issue 797), which JSON encoders
// emit, and names the line where the enclosing collection began rather than the line of a
// syntax error. The tokens become the same fields and values as YAML nodes, so that both
// syntaxes go through fileParser.org.

// isJSON reports whether data begins, after white space, with '{'.
func isJSON(data []byte) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{'
}

// jsonReader reads JSON tokens and the line each is on.
type jsonReader struct {
	dec  *json.Decoder
	data []byte
	off  int64 // lines are counted up to here
	line int
}

// next returns the next token and its line. A token never spans lines, so the line its end
// is on is its line.
func (r *jsonReader) next() (json.Token, int, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, 0, err
	}
	off := r.dec.InputOffset()
	r.line += bytes.Count(r.data[r.off:off], []byte{'\n'})
	r.off = off
	return tok, r.line, nil
}

// syntaxError describes the syntax error err found in data, with its line. The offsets in
// the decoder's errors count from the start of the token being read, so data is scanned
// again, as a whole, to find the line.
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(json.Unmarshal(data, &struct{}{}), &se) {
		off := min(max(se.Offset-1, 0), int64(len(data))) // the offset is just past the bad byte
		line := 1 + bytes.Count(data[:off], []byte{'\n'})
		return fmt.Errorf("line %d: not valid JSON: %s", line, withoutChar(se.Error()))
	}
	return fmt.Errorf("not valid JSON: %s", withoutChar(err.Error()))
}

// withoutChar drops the character that an encoding/json syntax error quotes, as in
// "invalid character 'x' in string literal": it may be part of a key.
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

// readJSON reads a JSON document: an object whose one field, orgs, is an array of objects.
// It returns only a syntax error; other problems are recorded in p.
func (p *fileParser) readJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers keep their text, which is checked as CREDITGATE_ORGS checks it
	if err := p.jsonDocument(&jsonReader{dec: dec, data: data, line: 1}); err != nil {
		return syntaxError(data, err)
	}
	return nil
}

func (p *fileParser) jsonDocument(r *jsonReader) error {
	tok, line, err := r.next()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		// isJSON saw a '{'; only a syntax error can get here, but be safe.
		p.fail(line, `want a mapping with the field "orgs"`)
		return nil
	}
	rootLine, sawOrgs := line, false
	for {
		tok, line, err := r.next()
		if err != nil {
			return err
		}
		if tok == json.Delim('}') {
			break
		}
		switch name := tok.(string); { // the decoder returns only strings as object keys
		case name != "orgs":
			p.fail(line, `unknown field %s (known fields: orgs)`, quote(name))
		case sawOrgs:
			p.fail(line, `field "orgs" given twice`)
		default:
			sawOrgs = true
			if err := p.jsonOrgs(r); err != nil {
				return err
			}
			continue
		}
		if _, err := r.value(false, p); err != nil { // the value of a field left out
			return err
		}
	}
	if !sawOrgs {
		p.fail(rootLine, `missing field "orgs"`)
	}
	// Only white space may follow.
	switch _, err := r.dec.Token(); {
	case err == io.EOF:
		return nil
	case err == nil:
		return errors.New("more than one top-level value")
	default:
		return err
	}
}

// jsonOrgs reads the value of the orgs field.
func (p *fileParser) jsonOrgs(r *jsonReader) error {
	tok, line, err := r.next()
	if err != nil {
		return err
	}
	if tok != json.Delim('[') {
		v, err := r.scalarOrSkip(tok, line, false, p)
		if err != nil {
			return err
		}
		p.fail(line, `field "orgs": must be a list of orgs, got %s`, v.noun())
		return nil
	}
	// The number of orgs is not known yet; the number of "id" strings is a good guess.
	p.start(bytes.Count(r.data, []byte(`"id"`)))
	for j := 0; ; j++ {
		tok, line, err := r.next()
		if err != nil {
			return err
		}
		if tok == json.Delim(']') {
			return nil
		}
		if tok != json.Delim('{') {
			v, err := r.scalarOrSkip(tok, line, false, p)
			if err != nil {
				return err
			}
			p.fail(line, "orgs[%d]: must be a mapping of org fields, got %s", j, v.noun())
			continue
		}
		orgLine := line
		p.fields, p.items = p.fields[:0], p.items[:0]
		for {
			tok, line, err := r.next()
			if err != nil {
				return err
			}
			if tok == json.Delim('}') {
				break
			}
			name := tok.(string)
			v, err := r.value(name == "keys", p)
			if err != nil {
				return err
			}
			p.fields = append(p.fields, field{name: name, line: line, val: v})
		}
		p.org(j, orgLine)
	}
}

// value reads the next value, keeping the items of an array (in p.items) when items is set.
func (r *jsonReader) value(items bool, p *fileParser) (value, error) {
	tok, line, err := r.next()
	if err != nil {
		return value{}, err
	}
	return r.scalarOrSkip(tok, line, items, p)
}

// scalarOrSkip converts the value that begins with tok. It reads the rest of an array or
// object, keeping the items of an array when items is set.
func (r *jsonReader) scalarOrSkip(tok json.Token, line int, items bool, p *fileParser) (value, error) {
	v := value{line: line}
	switch t := tok.(type) {
	case string:
		v.kind, v.text = kindString, t
	case json.Number:
		v.kind, v.text = kindNumber, string(t)
	case bool:
		v.kind, v.text = kindBool, "false"
		if t {
			v.text = "true"
		}
	case nil:
		v.kind, v.text = kindNull, "null"
	case json.Delim:
		if t == '{' {
			v.kind = kindMapping
			return v, r.skip()
		}
		v.kind = kindList
		first := len(p.items)
		for {
			tok, line, err := r.next()
			if err != nil {
				return value{}, err
			}
			if tok == json.Delim(']') {
				break
			}
			item, err := r.scalarOrSkip(tok, line, false, p)
			if err != nil {
				return value{}, err
			}
			if items {
				p.items = append(p.items, item)
			}
		}
		if items {
			v.items = p.items[first:]
		}
	}
	return v, nil
}

// skip reads the rest of an object or array whose opening delimiter has been read.
func (r *jsonReader) skip() error {
	for depth := 1; depth > 0; {
		tok, _, err := r.next()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}
