package orgs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// knownFileFields lists the fields of an org in a file: the ID, then those of CREDITGATE_ORGS.
var knownFileFields = "id, " + knownFields

// maxFileErrors caps the problems ParseFile reports one by one; a mistake repeated in every
// org of a 100,000-org file should not print 100,000 lines at start-up.
const maxFileErrors = 100

// LoadFile reads orgs from the YAML or JSON file at path, as ParseFile does. Every error is
// prefixed with the file's base name.
func LoadFile(path string) ([]Org, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	orgs, err := ParseFile(data)
	if err != nil {
		errs := unjoin(err)
		base := filepath.Base(path)
		for i, e := range errs {
			errs[i] = fmt.Errorf("%s: %w", base, e)
		}
		return nil, errors.Join(errs...)
	}
	return orgs, nil
}

// ParseFile reads orgs from YAML or JSON data in the format described in the package
// documentation, and returns them in the order given. It applies the rules of Parse, with
// the same checks for each field, and gives the same Org values. On error it returns nil and
// every problem found, joined (after the first 100, only their number); each names the line,
// the org (or its position in the list when its ID is unusable) and the field, and quotes
// the bad value, except for keys, which no error shows.
//
// Data whose first non-blank byte is '{' is read as JSON, with encoding/json; if it is not
// valid JSON but valid YAML (a YAML flow mapping), it is read as YAML. Other data is read
// as YAML, which JSON nearly is.
func ParseFile(data []byte) ([]Org, error) {
	if isJSON(data) {
		var p fileParser
		jsonErr := p.readJSON(data)
		if jsonErr == nil {
			return p.result()
		}
		doc, err := decodeYAML(data)
		if err != nil {
			return nil, jsonErr
		}
		var q fileParser
		q.document(doc)
		return q.result()
	}
	doc, err := decodeYAML(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	var p fileParser
	p.document(doc)
	return p.result()
}

// decodeYAML parses data, which must hold one YAML document (yaml.Unmarshal would ignore
// anything after the first).
func decodeYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, err
	}
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return &doc, nil
	case err != nil:
		return nil, err
	}
	return nil, fmt.Errorf("line %d: a second document; the file must hold one", extra.Line)
}

// fileParser turns the fields of each org, whatever the syntax they were read from, into
// Orgs, collecting errors.
type fileParser struct {
	orgs   []Org
	errs   []error
	nerrs  int            // problems found, including those not kept in errs
	lineOf map[string]int // org ID → line of its id field
	// The current org's fields and the items of its keys list, reused from org to org.
	fields []field
	items  []value
}

// A field is one field of an org as written in a file.
type field struct {
	name string
	line int // line of the field name
	val  value
}

// A value is a field value as written in a file.
type value struct {
	kind  valueKind
	text  string // the text of a scalar, unquoted
	tag   string // the YAML tag of a kindOther scalar
	line  int
	items []value // the items of a list given to the keys field
}

type valueKind uint8

const (
	kindString valueKind = iota + 1 // a YAML string (quoted or not) or a JSON string
	kindNumber
	kindBool
	kindNull
	kindOther // another YAML scalar, such as a timestamp
	kindList
	kindMapping
)

// noun names the kind of v for an error message, without its text.
func (v value) noun() string {
	switch v.kind {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "null"
	case kindList:
		return "a list"
	case kindMapping:
		return "a mapping"
	}
	return "a value tagged " + v.tag
}

// describe names the kind of v and, for a scalar, quotes its text.
func (v value) describe() string {
	switch v.kind {
	case kindString, kindNumber, kindBool, kindOther:
		return v.noun() + " " + quote(v.text)
	}
	return v.noun()
}

func (p *fileParser) fail(line int, format string, args ...any) {
	p.nerrs++
	if p.nerrs <= maxFileErrors {
		p.errs = append(p.errs, fmt.Errorf("line %d: "+format, append([]any{line}, args...)...))
	}
}

func (p *fileParser) result() ([]Org, error) {
	if p.nerrs > 0 {
		if p.nerrs > maxFileErrors {
			p.errs = append(p.errs, fmt.Errorf("%d more problems not shown (%d in all)", p.nerrs-maxFileErrors, p.nerrs))
		}
		return nil, errors.Join(p.errs...)
	}
	if len(p.orgs) == 0 {
		return nil, nil
	}
	return p.orgs, nil
}

// document reads the YAML document: a mapping whose one field, orgs, is a list of mappings.
func (p *fileParser) document(doc *yaml.Node) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		line := 1
		if len(doc.Content) == 1 {
			line = doc.Content[0].Line
		}
		p.fail(line, `want a mapping with the field "orgs"`)
		return
	}
	root := doc.Content[0]
	sawOrgs := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		if k.Value != "orgs" {
			p.fail(k.Line, `unknown field %s (known fields: orgs)`, quote(k.Value))
			continue
		}
		if sawOrgs {
			p.fail(k.Line, `field "orgs" given twice`)
			continue
		}
		sawOrgs = true
		if v.Kind != yaml.SequenceNode {
			p.fail(v.Line, `field "orgs": must be a list of orgs, got %s`, p.yamlValue(v, false).noun())
			continue
		}
		p.start(len(v.Content))
		for j, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.MappingNode {
				p.fail(item.Line, "orgs[%d]: must be a mapping of org fields, got %s", j, p.yamlValue(item, false).noun())
				continue
			}
			p.fields, p.items = p.fields[:0], p.items[:0]
			for f := 0; f+1 < len(item.Content); f += 2 {
				k, v := item.Content[f], item.Content[f+1]
				p.fields = append(p.fields, field{name: k.Value, line: k.Line, val: p.yamlValue(v, k.Value == "keys")})
			}
			p.org(j, item.Line)
		}
	}
	if !sawOrgs {
		p.fail(root.Line, `missing field "orgs"`)
	}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// yamlValue converts n, keeping the items of a list (in p.items) when items is set.
func (p *fileParser) yamlValue(n *yaml.Node, items bool) value {
	line := n.Line
	n = resolve(n)
	v := value{line: line}
	switch n.Kind {
	case yaml.ScalarNode:
		v.text = n.Value
		switch tag := n.ShortTag(); tag {
		case "!!str":
			v.kind = kindString
		case "!!int", "!!float":
			v.kind = kindNumber
		case "!!bool":
			v.kind = kindBool
		case "!!null":
			v.kind = kindNull
		default:
			v.kind, v.tag = kindOther, tag
		}
	case yaml.SequenceNode:
		v.kind = kindList
		if items {
			first := len(p.items)
			for _, item := range n.Content {
				p.items = append(p.items, p.yamlValue(item, false))
			}
			v.items = p.items[first:]
		}
	default:
		v.kind = kindMapping
	}
	return v
}

// start prepares for a list of n orgs.
func (p *fileParser) start(n int) {
	p.orgs = make([]Org, 0, n)
	p.lineOf = make(map[string]int, n)
}

// org turns p.fields, the fields of the org at index i of the list (from 0), whose mapping
// begins at line, into an Org.
func (p *fileParser) org(i, line int) {
	where := "orgs[" + strconv.Itoa(i) + "]"
	o := Org{Commercial: true}
	idOK, idLine := false, line
	switch id := p.firstField("id"); {
	case id == nil:
		p.fail(line, `%s: missing field "id"`, where)
	case id.val.kind != kindString:
		idLine = id.val.line
		p.fail(idLine, `%s: field "id": must be a string, got %s`, where, id.val.describe())
	case !validID(id.val.text):
		idLine = id.val.line
		p.fail(idLine, "org %s: id must match %s", quote(id.val.text), idPattern)
	default:
		idLine = id.val.line
		o.ID, idOK = id.val.text, true
		where = fmt.Sprintf("org %q", o.ID)
	}

	var seen [len(fieldNames) + 1]int // line of each field seen; the last is id
	for _, f := range p.fields {
		idx := len(fieldNames)
		if f.name != "id" {
			idx = fieldIndex(f.name)
		}
		switch {
		case idx < 0:
			p.fail(f.line, "%s: unknown field %s (known fields: %s)", where, quote(f.name), knownFileFields)
			continue
		case seen[idx] > 0:
			p.fail(f.line, "%s: field %q given twice (lines %d and %d)", where, f.name, seen[idx], f.line)
			continue
		}
		seen[idx] = f.line
		switch f.name {
		case "id":
		case "keys":
			p.keys(&o, where, f.val)
		default:
			p.scalar(&o, where, f.name, f.val)
		}
	}

	if !idOK {
		return
	}
	if first, dup := p.lineOf[o.ID]; dup {
		p.fail(idLine, "org %q: defined twice (lines %d and %d)", o.ID, first, idLine)
		return
	}
	p.lineOf[o.ID] = idLine
	p.orgs = append(p.orgs, o)
}

// firstField returns the first field of the current org called name, or nil.
func (p *fileParser) firstField(name string) *field {
	for i := range p.fields {
		if p.fields[i].name == name {
			return &p.fields[i]
		}
	}
	return nil
}

// scalar sets the field name (any but id and keys) of o from v. The value must have the
// field's type; its text is then checked as in CREDITGATE_ORGS.
func (p *fileParser) scalar(o *Org, where, name string, v value) {
	var err error
	switch want := scalarKind(name); {
	case v.kind == want:
		err = setField(o, name, v.text)
	case want == kindString:
		err = fmt.Errorf("field %q: must be a string, got %s", name, v.describe())
	case want == kindBool:
		err = fmt.Errorf("field %q: must be true or false, got %s", name, v.describe())
	default:
		err = fmt.Errorf("field %q: must be a non-negative integer, got %s", name, v.describe())
	}
	if err != nil {
		p.fail(v.line, "%s: %w", where, err)
	}
}

// scalarKind returns the kind of value the field name (any but id and keys) takes.
func scalarKind(name string) valueKind {
	switch name {
	case "edition":
		return kindString
	case "commercial":
		return kindBool
	}
	return kindNumber
}

// keys adds the keys in v, a list of strings or one string of keys separated by '|', to o.
// No error shows a key, or any part of one.
func (p *fileParser) keys(o *Org, where string, v value) {
	switch v.kind {
	case kindString:
		for _, err := range setKeyList(o, v.text) {
			p.fail(v.line, "%s: %w", where, err)
		}
	case kindList:
		if len(v.items) > 0 {
			o.Keys = make([]Key, 0, len(v.items))
		}
		for i, item := range v.items {
			var err error
			switch {
			case item.kind != kindString:
				err = fmt.Errorf(`field "keys": key %d must be a string, got %s`, i+1, item.noun())
			case strings.Contains(item.text, "|"):
				// Most likely "k1|k2" meant as two keys.
				err = fmt.Errorf(`field "keys": key %d contains "|": list each key on its own, or give a key containing "|" as sha256:<hex>`, i+1)
			default:
				err = addKey(o, i+1, item.text)
			}
			if err != nil {
				p.fail(item.line, "%s: %w", where, err)
			}
		}
	default:
		p.fail(v.line, `%s: field "keys": must be a list of strings or a string, got %s`, where, v.noun())
	}
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return append([]error(nil), j.Unwrap()...)
	}
	return []error{err}
}
