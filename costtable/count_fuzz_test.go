package costtable

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

func FuzzCountJSONArray(f *testing.F) {
	f.Add([]byte(`{"data":[{"a":1},{"b":[2,3]}]}`), "data")             // two records, nested values
	f.Add([]byte(`{"data":[]}`), "data")                                // empty array
	f.Add([]byte(`{"x":{"data":[1,2]},"data":[1]}`), "data")            // a nested key does not count
	f.Add([]byte(`{"data":[1,2],"d\u0061ta":[1,2,3]}`), "data")         // escaped duplicate: the larger
	f.Add([]byte(`{"\ud83d\ude00":[1],"\ud800\u0078":[1,2]}`), "😀")     // surrogate pair and an unpaired one
	f.Add([]byte(`{"data":["],{\"\\",-0.5e+10,true,null]}`), "data")    // brackets in strings, a number
	f.Add([]byte(`{"data":null}`), "data")                              // not an array
	f.Add([]byte(`{"data":[01]}`), "data")                              // bad number
	f.Add([]byte(`{"data":[1,]}`), "data")                              // trailing comma
	f.Add([]byte(`{"data":[1,2]}x`), "data")                            // trailing data
	f.Add([]byte(`{"data":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}`), "data") // deep
	f.Add([]byte("\xef\xbb\xbf{\"data\":[1]}"), "data")                 // byte order mark
	f.Add([]byte("{\"\xff\":[\"\xfe\"]}"), "\uFFFD")                    // invalid UTF-8
	f.Add([]byte(nil), "")                                              // nothing
	f.Add([]byte(`{"DATA":[1,2,3]}`), "data")                           // upper case matches
	f.Add([]byte(`{"dAtA":[1,2]}`), "Data")                             // mixed case, both sides
	f.Add([]byte(`{"\u0044ata":[1]}`), "data")                          // an escaped upper-case letter
	f.Add([]byte(`{"data":[1],"DATA":[1,2,3]}`), "data")                // case duplicates: the larger, last
	f.Add([]byte(`{"DATA":[1,2,3],"data":[1]}`), "data")                // ...and first
	f.Add([]byte(`{"data":[1,2,3],"DATA":"x"}`), "data")                // a non-array duplicate: n kept, not ok
	f.Add([]byte(`{"Data":null,"data":[1,2]}`), "data")                 // null first, array after
	f.Add([]byte(`{"ſ":[1,2]}`), "s")                                   // U+017F folds to S
	f.Add([]byte(`{"\u017f":[1]}`), "S")                                // ...escaped
	f.Add([]byte("{\"\u212a\":[1,2]}"), "k")                            // U+212A, the Kelvin sign, folds to K
	f.Add([]byte(`{"k":[1]}`), "\u212a")                                // ...from the key's side
	f.Add([]byte(`{"ıd":[1,2]}`), "id")                                 // U+0131 pairs with I only as ToUpper(ToLower(r))
	f.Add([]byte(`{"ÉTÉ":[1]}`), "été")                                 // non-ASCII letters fold too
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		n, ok := CountJSONArray(body, key)
		if n < 0 {
			t.Fatalf("CountJSONArray(%q, %q) = %d, %t; want n at least 0", body, key, n, ok)
		}
		valid := json.Valid(body)
		if (ok || n != 0) && !valid {
			t.Fatalf("CountJSONArray(%q, %q) = %d, %t; but json.Valid is false", body, key, n, ok)
		}
		if !valid {
			return
		}
		if depth := jsonDepth(body); depth > maxDepth {
			if ok || n != 0 {
				t.Fatalf("CountJSONArray(%q, %q) = %d, %t at depth %d; want 0, false", body, key, n, ok, depth)
			}
			return
		}
		// The reference is ok for exactly the valid objects whose matching keys, if any, all
		// hold arrays: so this also checks that such bodies are never refused.
		if wantN, wantOK := refCountJSONArray(body, key); n != wantN || ok != wantOK {
			t.Fatalf("CountJSONArray(%q, %q) = %d, %t; encoding/json says %d, %t", body, key, n, ok, wantN, wantOK)
		}
		// What is charged covers what encoding/json binds: decoded into a struct whose one
		// field is named key, the body never yields more records than n, ok or not.
		if bound, decoded := encodingJSONBinds(body, key); decoded && n < int64(bound) {
			t.Fatalf("CountJSONArray(%q, %q) = %d, %t; encoding/json binds %d records to a field named %q",
				body, key, n, ok, bound, key)
		}
	})
}

// encodingJSONBinds decodes body with encoding/json into a struct with one field,
// []json.RawMessage tagged json:"<key>", and returns the length of that field; decoded is
// false when Unmarshal fails, or when key is not a plain tag name (empty, or with characters
// other than [A-Za-z0-9_-]).
func encodingJSONBinds(body []byte, key string) (bound int, decoded bool) {
	if key == "" || strings.ContainsFunc(key, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-')
	}) {
		return 0, false
	}
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "Records",
		Type: reflect.TypeFor[[]json.RawMessage](),
		Tag:  reflect.StructTag(`json:"` + key + `"`),
	}})
	v := reflect.New(typ)
	if err := json.Unmarshal(body, v.Interface()); err != nil {
		return 0, false
	}
	return v.Elem().Field(0).Len(), true
}

// refFold folds s as keys and names are compared: every character r to
// unicode.ToUpper(unicode.ToLower(r)), invalid UTF-8 to U+FFFD.
func refFold(s string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, s)
}

func FuzzCountQueryList(f *testing.F) {
	f.Add("ids=1,2,3", "ids")                   // plain
	f.Add("ids=1%2C2%2c3", "ids")               // escaped separators
	f.Add("ids=,,1,+,%20", "ids")               // empty and blank elements
	f.Add("i%64s=1,2&x=1;ids=3", "ids")         // escaped name, both pair separators
	f.Add("ids=1,2&ids=3", "ids")               // repeated parameter
	f.Add("ids=%zz,%2,%252C", "ids")            // malformed and double escapes
	f.Add("a+b=1,2", "a b")                     // '+' in the name
	f.Add("ids", "ids")                         // no value
	f.Add("=1,2", "")                           // empty name
	f.Add("ids=\xff,\x00&&;;", "ids")           // invalid bytes
	f.Add("IDS=1,2&Ids=3", "ids")               // upper and mixed case
	f.Add("I%44s=1&%49ds=2", "ids")             // case behind escapes
	f.Add("ids[]=1&ids[]=2", "ids")             // the empty-bracket list form
	f.Add("ids[0]=1&ids[1]=2,3", "ids")         // the indexed list form
	f.Add("ids%5B%5D=1&ids%5b7%5d=2", "ids")    // escaped brackets
	f.Add("IDS=1,2&ids[]=3&ids[1]=4", "ids")    // every form at once: 4
	f.Add("ids[a][b]=1&ids[=2&ids[]x=3", "ids") // not list forms
	f.Add("%C5%BFort=1&ſort=2", "sort")         // U+017F, escaped and not
	f.Add("%E2%84%AAey=1", "key")               // U+212A, the Kelvin sign
	f.Add("ids[%5B]=1&ids[]]=2", "ids")         // a bracket inside the index
	f.Fuzz(func(t *testing.T, rawQuery, name string) {
		got := CountQueryList(rawQuery, name)
		if got < 0 {
			t.Fatalf("CountQueryList(%q, %q) = %d, want at least 0", rawQuery, name, got)
		}
		if want := refCountQueryList(rawQuery, name); got != want {
			t.Fatalf("CountQueryList(%q, %q) = %d, want %d", rawQuery, name, got, want)
		}
	})
}

// refCountQueryList is CountQueryList the obvious way: decode each value, split it on
// commas, count the elements that are not blank.
func refCountQueryList(rawQuery, name string) int64 {
	var n int64
	for _, pair := range strings.FieldsFunc(rawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(pair, "=")
		if !refNamesParam(k, name) {
			continue
		}
		for _, e := range strings.Split(refUnescape(v), ",") {
			if strings.Trim(e, " \t\n\v\f\r") != "" {
				n++
			}
		}
	}
	return n
}

// refNamesParam is namesParam the obvious way: the decoded name folds to name, alone or
// followed by "[…]" holding no bracket.
func refNamesParam(rawName, name string) bool {
	k := refUnescape(rawName)
	if refFold(k) == refFold(name) {
		return true
	}
	i := strings.LastIndexByte(k, '[')
	if i < 0 {
		return false
	}
	index := k[i+1:]
	return strings.HasSuffix(index, "]") && !strings.ContainsAny(index[:len(index)-1], "[]") &&
		refFold(k[:i]) == refFold(name)
}

// refUnescape decodes '+' and well-formed %XX escapes and keeps anything else as it is.
func refUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '+':
			b.WriteByte(' ')
		case s[i] == '%' && i+2 < len(s) && strings.ContainsRune(hexDigits, rune(s[i+1])) &&
			strings.ContainsRune(hexDigits, rune(s[i+2])):
			hi := strings.IndexByte(hexDigits, lowerHex(s[i+1]))
			lo := strings.IndexByte(hexDigits, lowerHex(s[i+2]))
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

const hexDigits = "0123456789abcdefABCDEF"

func lowerHex(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}
