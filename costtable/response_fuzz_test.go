package costtable

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzResponseNumber checks the Counter's path reader against encoding/json: a body decoded
// into maps (the last of duplicate keys kept, as the Counter keeps it) and walked by the path
// gives the same number, or the same absence, whatever pieces the body arrives in; a body
// encoding/json rejects is never read.
func FuzzResponseNumber(f *testing.F) {
	f.Add([]byte(`{"usage":{"total_tokens":12345}}`), "usage.total_tokens", uint8(0))                        // the LLM case
	f.Add([]byte(`{"usage":{"total_tokens":1},"usage":{"total_tokens":2}}`), "usage.total_tokens", uint8(1)) // duplicates
	f.Add([]byte(`{"usage":{"total_tokens":1},"usage":null}`), "usage.total_tokens", uint8(2))               // a later null parent
	f.Add([]byte(`{"a":{"b":-0.5e+1}}`), "a.b", uint8(3))                                                    // every part of a number
	f.Add([]byte(`{"a":{"b":1E400}}`), "a.b", uint8(1))                                                      // out of range
	f.Add([]byte(`{"\u0061":{"\ud83d\ude00":7}}`), "a.😀", uint8(4))                                          // escaped keys
	f.Add([]byte(`{"a":[{"b":1}],"b":2}`), "b", uint8(5))                                                    // arrays are not objects
	f.Add([]byte(`{"x":{"a":{"b":1}},"a":{"c":1}}`), "a.b", uint8(2))                                        // the same key deeper
	f.Add([]byte("{\"\xff\":1}"), "a", uint8(1))                                                             // invalid UTF-8 in a key
	f.Add([]byte(`{"a":1}  `), "a", uint8(0))                                                                // trailing space
	f.Add([]byte(`{"a":01}`), "a", uint8(0))                                                                 // invalid number
	f.Add([]byte(`{"a":"\u00e9","\u00e9":3}`), "é", uint8(2))                                                // an escape for a two-byte key
	f.Add([]byte(`{"a":[[[[[[[[1]]]]]]]],"b":{"c":{"d":4}}}`), "b.c.d", uint8(3))                            // deep
	f.Fuzz(func(t *testing.T, body []byte, path string, piece uint8) {
		r := &Response{Number: path, Per: 1}
		if checkPath(path) != nil {
			return
		}
		got, err := readAll(r, false, string(body), int(piece))
		want, wantErr := refNumber(body, path)
		if got != want || !errors.Is(err, wantErr) {
			t.Fatalf("body %q path %q (pieces of %d): %d, %v; encoding/json says %d, %v", body, path, piece, got, err, want, wantErr)
		}
	})
}

// FuzzResponseCount is FuzzResponseNumber for Count rules: the array at the path, counted.
func FuzzResponseCount(f *testing.F) {
	f.Add([]byte(`{"data":[1,{"data":[1,2]},[3]]}`), "data", uint8(0))
	f.Add([]byte(`{"data":[1],"data":[1,2]}`), "data", uint8(1))
	f.Add([]byte(`{"data":[1,2],"data":"x"}`), "data", uint8(2))
	f.Add([]byte(`{"r":{"items":[]}}`), "r.items", uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, path string, piece uint8) {
		r := &Response{Count: path, Per: 1}
		if checkPath(path) != nil {
			return
		}
		got, err := readAll(r, false, string(body), int(piece))
		want, wantErr := refCount(body, path)
		if got != want || !errors.Is(err, wantErr) {
			t.Fatalf("body %q path %q (pieces of %d): %d, %v; encoding/json says %d, %v", body, path, piece, got, err, want, wantErr)
		}
	})
}

// refValue decodes body with encoding/json and walks path: the value there, or the reason
// there is none.
func refValue(body []byte, path string) (any, error) {
	if !json.Valid(body) || jsonDepth(body) > maxDepth {
		return nil, ErrResponseNotJSON
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, ErrResponseNotJSON // not reached: the body is valid
	}
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, ErrResponseMissing
		}
		if v, ok = m[key]; !ok {
			return nil, ErrResponseMissing
		}
	}
	return v, nil
}

func refNumber(body []byte, path string) (int64, error) {
	v, err := refValue(body, path)
	if err != nil {
		return 0, err
	}
	n, ok := v.(json.Number)
	switch {
	case !ok:
		return 0, ErrResponseMissing
	case len(n) > maxNumber:
		return 0, ErrResponseNumber
	}
	return ceilNumber(string(n)), nil
}

func refCount(body []byte, path string) (int64, error) {
	v, err := refValue(body, path)
	if err != nil {
		return 0, err
	}
	a, ok := v.([]any)
	if !ok {
		return 0, ErrResponseMissing
	}
	return int64(len(a)), nil
}

func TestCeilNumber(t *testing.T) {
	tests := []struct {
		give string
		want int64
	}{
		{"0", 0}, {"-0", 0}, {"7", 7}, {"-7", 0}, {"12.01", 13}, {"12.0", 12}, {"1e3", 1000}, {"1.5E+3", 1500},
		{"12345e-3", 13}, {"9223372036854775807", 9223372036854775807}, {"9223372036854775808", 9223372036854775807},
		{"1e400", 9223372036854775807}, {"-1e400", 0}, {"1e-400", 0},
	}
	for _, tt := range tests {
		if got := ceilNumber(tt.give); got != tt.want {
			t.Errorf("ceilNumber(%s) = %d, want %d", tt.give, got, tt.want)
		}
	}
}
