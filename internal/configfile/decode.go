package configfile

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Decode reads data, one YAML or JSON document (see Parse), into v, a pointer to a struct.
// It returns the document's root node, for errors the caller finds in the values, or nil
// with a *SyntaxError. Other errors are Errors; v then holds what could be read.
func Decode(data []byte, v any) (*yaml.Node, error) {
	n, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return n, DecodeNode(n, v)
}

// Pos is where a mapping began. A struct field of this type (tagged `yaml:"-" json:"-"`)
// receives the position of the mapping its struct was decoded from.
type Pos struct{ Line, Column int }

// A Step is one step of a Path: a field of a mapping, or an index in a list when Field is "".
type Step struct {
	Field string
	Index int
}

// A Path locates a value in a document, from the root.
type Path []Step

// String formats p as rules[0].cost.
func (p Path) String() string {
	var b strings.Builder
	for _, s := range p {
		if s.Field == "" {
			b.WriteString("[" + strconv.Itoa(s.Index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Field)
	}
	return b.String()
}

// ErrorKind classifies an Error.
type ErrorKind uint8

const (
	// UnknownField: Key is not a field of the mapping at Path; Known lists those that are.
	UnknownField ErrorKind = iota + 1
	// RepeatedField: Key is given twice in the mapping at Path, first on line First.
	RepeatedField
	// WrongType: the value at Path is not what its field takes (Want).
	WrongType
)

// An Error is a value at a known place in a document that does not fit the struct.
type Error struct {
	Kind         ErrorKind
	Line, Column int // of the key (UnknownField, RepeatedField) or of the value
	Path         Path
	Key          string
	First        int
	Known        []string
	Want         string     // "an integer", "true or false", "a string", "a list", "a mapping"
	Node         *yaml.Node // the value (WrongType)
}

func (e *Error) Error() string {
	where := ""
	if len(e.Path) > 0 {
		where = e.Path.String() + ": "
	}
	return fmt.Sprintf("line %d: %s%s", e.Line, where, e.Msg())
}

// Msg describes the problem, without its line and path.
func (e *Error) Msg() string {
	switch e.Kind {
	case UnknownField:
		return fmt.Sprintf("unknown field %q (known fields: %s)", e.Key, strings.Join(e.Known, ", "))
	case RepeatedField:
		return fmt.Sprintf("field %q given twice (lines %d and %d)", e.Key, e.First, e.Line)
	}
	if n := resolve(e.Node); n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
		return "want " + e.Want + ", got " + Quote(n.Value)
	}
	return "want " + e.Want + ", got " + Noun(e.Node)
}

// Lookup returns the node at path under n, or nil.
func Lookup(n *yaml.Node, path ...Step) *yaml.Node {
	for _, s := range path {
		n = resolve(n)
		switch {
		case s.Field == "" && n.Kind == yaml.SequenceNode && s.Index >= 0 && s.Index < len(n.Content):
			n = n.Content[s.Index]
		case s.Field != "" && n.Kind == yaml.MappingNode:
			var found *yaml.Node
			for i := 0; i+1 < len(n.Content) && found == nil; i += 2 {
				if resolve(n.Content[i]).Value == s.Field {
					found = n.Content[i+1]
				}
			}
			if found == nil {
				return nil
			}
			n = found
		default:
			return nil
		}
	}
	return n
}

// Errors are the problems Decode found, in the document's order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns each error, as errors.Join would.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Noun names the kind of n for an error message, without its text.
func Noun(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		default:
			return "a value tagged " + tag
		}
	}
	return "nothing"
}

// Describe is Noun and, for a scalar other than null, its text quoted.
func Describe(n *yaml.Node) string {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
		return Noun(n) + " " + Quote(n.Value)
	}
	return Noun(n)
}

// Quote quotes a value for an error message, cut to 64 bytes so that a runaway value does
// not flood the log.
func Quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// DecodeNode decodes n, as Parse returns it, into v, a pointer. Struct fields are matched by
// their yaml tag, exactly; a field without a tag is not decoded. A type that implements
// yaml.Unmarshaler decodes itself, null included. Null leaves a pointer nil and a string,
// number or boolean zero; for a list or a mapping it is an error.
func DecodeNode(n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("configfile: decode into a non-nil pointer")
	}
	var d decoder
	d.value(n, rv.Elem(), nil)
	if len(d.errs) > 0 {
		return d.errs
	}
	return nil
}

type decoder struct{ errs Errors }

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	posType         = reflect.TypeFor[Pos]()
)

func (d *decoder) wrongType(at *yaml.Node, path Path, want string) {
	d.errs = append(d.errs, &Error{Kind: WrongType, Line: at.Line, Column: at.Column, Path: slices.Clone(path), Want: want, Node: at})
}

// value decodes n into v at path. Errors give the line of n, even when n is an alias.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path Path) {
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.wrongType(n, path, err.Error())
		}
		return
	}
	r := resolve(n)
	null := r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null"
	switch v.Kind() {
	case reflect.Pointer:
		if null {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case reflect.Struct:
		if r.Kind != yaml.MappingNode {
			d.wrongType(n, path, "a mapping")
			return
		}
		d.mapping(r, v, path)
	case reflect.Slice:
		if r.Kind != yaml.SequenceNode {
			d.wrongType(n, path, "a list")
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), len(r.Content), len(r.Content)))
		for i, item := range r.Content {
			d.value(item, v.Index(i), append(path[:len(path):len(path)], Step{Index: i}))
		}
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		want := wantOf(v.Kind())
		if r.Kind != yaml.ScalarNode {
			d.wrongType(n, path, want)
			return
		}
		if null {
			v.SetZero()
			return
		}
		if err := r.Decode(v.Addr().Interface()); err != nil {
			d.wrongType(n, path, want)
		}
	default:
		panic("configfile: cannot decode into " + v.Type().String())
	}
}

func wantOf(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "an integer"
}

// mapping decodes the mapping n into the struct v.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path Path) {
	fs := fieldsOf(v.Type())
	if fs.pos >= 0 {
		v.Field(fs.pos).Set(reflect.ValueOf(Pos{n.Line, n.Column}))
	}
	var seen []int // line of each field given, by index in fs.names; 0: not yet
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name := resolve(k).Value
		idx := fs.index(name)
		if idx < 0 {
			d.errs = append(d.errs, &Error{Kind: UnknownField, Line: k.Line, Column: k.Column, Path: slices.Clone(path), Key: name, Known: fs.names})
			continue
		}
		if seen == nil {
			seen = make([]int, len(fs.names))
		}
		if seen[idx] > 0 {
			d.errs = append(d.errs, &Error{Kind: RepeatedField, Line: k.Line, Column: k.Column, Path: slices.Clone(path), Key: name, First: seen[idx]})
			continue
		}
		seen[idx] = k.Line
		d.value(val, v.Field(fs.fields[idx]), append(path[:len(path):len(path)], Step{Field: name}))
	}
}

type structFields struct {
	names  []string // yaml names, in declaration order
	fields []int    // struct field index of each name
	pos    int      // index of the Pos field, or -1
}

func (fs *structFields) index(name string) int {
	for i, n := range fs.names {
		if n == name {
			return i
		}
	}
	return -1
}

var fieldCache sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*structFields)
	}
	fs := &structFields{pos: -1}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == posType {
			fs.pos = i
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fs.names = append(fs.names, name)
		fs.fields = append(fs.fields, i)
	}
	fieldCache.Store(t, fs)
	return fs
}
