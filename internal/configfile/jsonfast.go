package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// errNotFast is returned by DecodeJSON for data it leaves to Decode.
var errNotFast = errors.New("configfile: not decoded on the fast path")

// DecodeJSON decodes JSON data into v with encoding/json, unknown fields refused, which is
// several times faster than Decode on a large file. It accepts only data that Decode would
// read into the same v: besides errors, it refuses (with an error without a line) a key
// repeated in an object, and a key that is not plain lower-case ASCII, since encoding/json
// would match "ID" or "\u0069d" to a field tagged "id" where YAML matches exactly. On any
// error, decode again with Decode for the errors to report; Decode may also accept what
// this refuses. Types that implement yaml.Unmarshaler must implement json.Unmarshaler to
// the same effect.
func DecodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errNotFast
	}
	if !plainKeys(data) {
		return errNotFast
	}
	return nil
}

// plainKeys reports whether every key of every object in data, valid JSON, is lower-case
// ASCII without escapes and differs from the other keys of its object.
func plainKeys(data []byte) bool {
	var (
		keys  [][]byte // keys of the open objects, outermost first
		marks []int    // where each open object's keys begin in keys; -1 for an array
	)
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			marks = append(marks, len(keys))
		case '[':
			marks = append(marks, -1)
		case '}', ']':
			if m := marks[len(marks)-1]; m >= 0 {
				keys = keys[:m]
			}
			marks = marks[:len(marks)-1]
		case '"':
			start, plain := i+1, true
			for i++; data[i] != '"'; i++ {
				switch c := data[i]; {
				case c == '\\':
					plain = false
					i++
				case c >= 'A' && c <= 'Z', c >= 0x80:
					plain = false
				}
			}
			key := data[start:i]
			j := i + 1
			for j < len(data) && (data[j] == ' ' || data[j] == '\t' || data[j] == '\r' || data[j] == '\n') {
				j++
			}
			if j == len(data) || data[j] != ':' {
				continue // a value, not a key
			}
			if !plain {
				return false
			}
			for _, k := range keys[marks[len(marks)-1]:] {
				if bytes.Equal(k, key) {
					return false
				}
			}
			keys = append(keys, key)
		}
	}
	return true
}
