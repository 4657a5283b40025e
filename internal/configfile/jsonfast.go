package configfile

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
)

// errNotFast is returned by DecodeJSONList for data it leaves to Decode.
var errNotFast = errors.New("configfile: not decoded on the fast path")

// DecodeJSONList decodes JSON data of the form {"<field>": [item, …]}, one item at a time:
// for each it calls each with the item's index and the item decoded into a zeroed T, and
// stops at the first error each returns. It reads data in one pass, without encoding/json's
// reflection over the whole item, so it is several times faster than Decode on a large file
// (a million orgs) and holds one item at a time.
//
// It accepts only what Decode would read the same way: T is a struct whose fields each
// carry a json tag naming the same key as their yaml tag (or "-"); a key must be such a
// name exactly (no escape, no other case: encoding/json would match "ID" or "\u0069d" to a
// field tagged "id" where Decode matches exactly) and appear once in its object, and any
// other shape is refused with an error without a line. Each field's value is checked as
// JSON and handed to the field's UnmarshalJSON, or else to encoding/json. On any error,
// decode again with Decode for the errors to report; Decode may also accept what this
// refuses. A T that implements yaml.Unmarshaler, or holds one, must implement
// json.Unmarshaler to the same effect.
func DecodeJSONList[T any](data []byte, field string, each func(i int, item *T) error) error {
	fields, ok := jsonFields(reflect.TypeFor[T]())
	if !ok {
		return errNotFast
	}
	s := scanner{data: data}
	if !s.next('{') || !s.key(field) || !s.next(':') || !s.next('[') {
		return errNotFast
	}
	var item T
	if !s.next(']') {
		for i := 0; ; i++ {
			var zero T
			item = zero
			if err := s.object(reflect.ValueOf(&item).Elem(), fields); err != nil {
				return err
			}
			if err := each(i, &item); err != nil {
				return err
			}
			if s.next(',') {
				continue
			}
			if !s.next(']') {
				return errNotFast
			}
			break
		}
	}
	if !s.next('}') {
		return errNotFast
	}
	if s.space(); s.i != len(data) {
		return errNotFast
	}
	return nil
}

// jsonFields returns the field index of each json tag name of struct type t, or false when
// t is not a struct of at most 64 fields, each tagged.
func jsonFields(t reflect.Type) (map[string]int, bool) {
	if t.Kind() != reflect.Struct || t.NumField() > 64 {
		return nil, false
	}
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case name == "" || !f.IsExported():
			return nil, false
		default:
			fields[name] = i
		}
	}
	return fields, true
}

// scanner reads JSON data from i on.
type scanner struct {
	data []byte
	i    int
}

// maxDepth bounds the nesting of values, as encoding/json does.
const maxDepth = 10000

// space skips white space.
func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and then c, reporting whether c was there.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// key reads the key name (a string without escapes) and reports whether it was there.
func (s *scanner) key(name string) bool {
	s.space()
	start := s.i
	return s.str() && string(s.data[start+1:s.i-1]) == name
}

// object reads an object into v, a struct whose fields has by name.
func (s *scanner) object(v reflect.Value, fields map[string]int) error {
	if !s.next('{') {
		return errNotFast
	}
	if s.next('}') {
		return nil
	}
	var seen uint64
	for {
		s.space()
		start := s.i
		if !s.str() {
			return errNotFast
		}
		f, ok := fields[string(s.data[start+1:s.i-1])]
		if !ok || seen&(1<<f) != 0 {
			return errNotFast // an unknown key (or one with an escape), or a repeated one
		}
		seen |= 1 << f
		if !s.next(':') {
			return errNotFast
		}
		s.space()
		start = s.i
		if !s.value(0) {
			return errNotFast
		}
		raw := s.data[start:s.i]
		p := v.Field(f).Addr().Interface()
		var err error
		if u, ok := p.(json.Unmarshaler); ok {
			err = u.UnmarshalJSON(raw)
		} else {
			err = json.Unmarshal(raw, p)
		}
		if err != nil {
			return err
		}
		if s.next(',') {
			continue
		}
		if s.next('}') {
			return nil
		}
		return errNotFast
	}
}

// value reads one JSON value that starts at i, at nesting depth, and reports whether it is
// valid.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.data) || depth > maxDepth {
		return false
	}
	switch c := s.data[s.i]; {
	case c == '"':
		return s.str()
	case c == '{':
		s.i++
		if s.next('}') {
			return true
		}
		for {
			s.space()
			if !s.str() || !s.next(':') {
				return false
			}
			if s.space(); !s.value(depth + 1) {
				return false
			}
			if !s.next(',') {
				return s.next('}')
			}
		}
	case c == '[':
		s.i++
		if s.next(']') {
			return true
		}
		for {
			if s.space(); !s.value(depth + 1) {
				return false
			}
			if !s.next(',') {
				return s.next(']')
			}
		}
	case c == 't':
		return s.word("true")
	case c == 'f':
		return s.word("false")
	case c == 'n':
		return s.word("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

func (s *scanner) word(w string) bool {
	if strings.HasPrefix(string(s.data[s.i:min(s.i+len(w), len(s.data))]), w) {
		s.i += len(w)
		return true
	}
	return false
}

// str reads a string that starts at i (with its quote), checking its escapes.
func (s *scanner) str() bool {
	d := s.data
	if s.i >= len(d) || d[s.i] != '"' {
		return false
	}
	for i := s.i + 1; i < len(d); {
		switch c := d[i]; {
		case c == '"':
			s.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if i+1 >= len(d) {
				return false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) {
					return false
				}
				for _, h := range d[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		default:
			i++
		}
	}
	return false
}

// number reads a number that starts at i, as JSON writes them.
func (s *scanner) number() bool {
	d, i := s.data, s.i
	digits := func() int {
		from := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		return i - from
	}
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	s.i = i
	return true
}
