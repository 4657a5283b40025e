package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// errNotFast is returned by DecodeJSONList for data it leaves to Decode.
var errNotFast = errors.New("configfile: not decoded on the fast path")

// DecodeJSONList decodes JSON data of the form {"<field>": [item, …]} with encoding/json,
// unknown fields refused, one item at a time: for each it calls each with the item's index
// and the item decoded into a zeroed T, and stops at the first error each returns. It is
// several times faster than Decode on a large file and holds one item at a time.
//
// It accepts only what Decode would read into a struct whose one field, tagged field, is a
// []T: besides decoding errors, it refuses (with an error without a line) another shape, a
// key repeated in an object, and a key that is not plain lower-case ASCII, since
// encoding/json would match "ID" or "\u0069d" to a field tagged "id" where Decode matches
// exactly. On any error, decode again with Decode for the errors to report; Decode may
// also accept what this refuses. A T that implements yaml.Unmarshaler, or holds one, must
// implement json.Unmarshaler to the same effect.
func DecodeJSONList[T any](data []byte, field string, each func(i int, item *T) error) error {
	if !plainKeys(data) {
		return errNotFast
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	for _, want := range []json.Token{json.Delim('{'), field, json.Delim('[')} {
		if tok, err := dec.Token(); err != nil || tok != want {
			return errNotFast
		}
	}
	var item T
	for i := 0; dec.More(); i++ {
		var zero T
		item = zero
		if err := dec.Decode(&item); err != nil {
			return err
		}
		if err := each(i, &item); err != nil {
			return err
		}
	}
	for _, want := range []json.Token{json.Delim(']'), json.Delim('}')} {
		if tok, err := dec.Token(); err != nil || tok != want {
			return errNotFast
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errNotFast
	}
	return nil
}

// plainKeys reports whether every key of every object in data is lower-case ASCII without
// escapes and differs from the other keys of its object. Data that is not valid JSON may
// give either answer; the decoder refuses it.
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
			if len(marks) == 0 {
				return false
			}
			if m := marks[len(marks)-1]; m >= 0 {
				keys = keys[:m]
			}
			marks = marks[:len(marks)-1]
		case '"':
			start, plain := i+1, true
			for i++; i < len(data) && data[i] != '"'; i++ {
				switch c := data[i]; {
				case c == '\\':
					plain = false
					i++
				case c >= 'A' && c <= 'Z', c >= 0x80:
					plain = false
				}
			}
			if i >= len(data) {
				return false
			}
			key := data[start:i]
			j := i + 1
			for j < len(data) && (data[j] == ' ' || data[j] == '\t' || data[j] == '\r' || data[j] == '\n') {
				j++
			}
			if j == len(data) || data[j] != ':' {
				continue // a value, not a key
			}
			if !plain || len(marks) == 0 || marks[len(marks)-1] < 0 {
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
