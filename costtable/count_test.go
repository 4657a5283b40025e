package costtable

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// recordsBody returns {"data":[…]} with n records, each an object holding a nested array and
// object, so that only the top array's own elements count.
func recordsBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"info":{"data":[0]},"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		s := strconv.Itoa(i)
		b.WriteString(`{"id":` + s + `,"Tags":["a,b","]"],"Owner":{"data":[` + s + `]}}`)
	}
	b.WriteString(`],"more":true}`)
	return b.String()
}

// benchBody returns a realistic insert body of about size bytes: {"data":[{…},…]} with
// CRM-style records.
func benchBody(size int) []byte {
	b := []byte(`{"data":[`)
	for i := 0; ; i++ {
		s := strconv.Itoa(i)
		rec := `{"Last_Name":"Müller-` + s + `","Email":"user` + s + `@example.com","Phone":5550100` + s +
			`,"Annual_Revenue":1.25e6,"Description":"line one\nline \"two\" \u00e9","Tags":["vip","web"]}`
		if i > 0 && len(b)+len(rec)+3 > size {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, rec...)
	}
	return append(b, "]}"...)
}

// short shortens a long input for a failure message.
func short(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:60]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return strconv.Quote(s)
}

func TestCountJSONArray(t *testing.T) {
	tests := []struct {
		give   string
		want   int64
		wantOK bool
	}{
		// Sizes around the per-record boundaries of the built-in table (1 per 10, 1 per 50).
		{recordsBody(0), 0, true},
		{recordsBody(1), 1, true},
		{recordsBody(10), 10, true},
		{recordsBody(11), 11, true},
		{recordsBody(49), 49, true},
		{recordsBody(50), 50, true},
		{recordsBody(51), 51, true},
		{recordsBody(1000), 1000, true},
		{`{"data":[]}`, 0, true},
		{`{"data":[ ]}`, 0, true},
		{`{"data":[{}]}`, 1, true},
		{`{"data":[[]]}`, 1, true},
		{`{"data":[null]}`, 1, true},
		{`{"data":[[1,[2,3]],{"a":[1,2,3]},[],{},"x"]}`, 5, true}, // nested elements count once
		{`{"data":["]", ",", "\"", "{", "[", "}", "\\", "\\\"]", "\"],\""]}`, 9, true},
		{`{"data":[{"]":"[","a\"]":"}"}]}`, 1, true}, // brackets in nested keys
		{`{"data":[0,-0,1,-1,10,123,0.5,-0.5,10.25,1e5,1E5,1e+5,1e-5,-1.25E-10,0e0,0.0e-0,1.0E+01,12345678901234567890123]}`, 18, true},
		{`{"data":[true,false,null,"",0,{},[]]}`, 7, true},
		{" \t\r\n{ \"data\" \n: \t[ 1 ,\r\n 2 , { } , [ ] , \"\" ] } \n", 5, true}, // whitespace everywhere
		{"{\"data\":[\"\x7f\xff\xfe\xc3\x28\"]}", 1, true},                         // DEL and invalid UTF-8 in a string
		{`{"data":["\"\\\/\b\f\n\r\t\u0000\uD800\uDC00\udfff"]}`, 1, true},         // every escape, lone surrogates too

		// Key matching on the decoded key.
		{`{"d\u0061ta":[1,2]}`, 2, true},
		{`{"\u0064\u0061\u0074\u0061":[1]}`, 1, true},
		{`{"dat\"a":[1]}`, 0, true},
		{`{"dat\\a":[1]}`, 0, true},
		{`{"data\u0000":[1]}`, 0, true},
		{`{"dat":[1],"datas":[1],"":[1]}`, 0, true},
		{`{"other":[1,2]}`, 0, true},
		{`{}`, 0, true},
		{`{"data":[1],"data":[1,2,3],"data":[]}`, 3, true}, // duplicates: the largest
		{`{"data":[1,2,3],"d\u0061ta":[1]}`, 3, true},
		{`{"data":[1],"data":null}`, 1, false}, // one of them is not an array: the other is still read
		{`{"x":{"data":[1,2]},"data":[1]}`, 1, true},
		{`{"x":{"data":[1,2]}}`, 0, true}, // depth 2 does not count
		{`{"x":[{"data":5}]}`, 0, true},
		{`{"x":"data","y":["data"]}`, 0, true},

		// Keys match without regard to case, as encoding/json binds them to a field: a client
		// must not pay less by spelling the key differently.
		{`{"DATA":[1,2]}`, 2, true},
		{`{"Data":[1],"DATA":[2]}`, 1, true},
		{`{"dAtA":[1,2,3]}`, 3, true},
		{`{"\u0044ATA":[1,2]}`, 2, true}, // an escaped upper-case letter
		{`{"D\u0041T\u0041":[1]}`, 1, true},
		{`{"DATA":` + recordsArray(1000) + `}`, 1000, true},
		{`{"data":[1],"DATA":` + recordsArray(1000) + `}`, 1000, true}, // the largest over every spelling
		{`{"DATA":` + recordsArray(1000) + `,"data":[1]}`, 1000, true},
		{`{"data":[1],"DATA":[1,2,3]}`, 3, true},
		{`{"DATA":[1,2,3],"data":[1]}`, 3, true},
		{`{"Data":[],"dATA":[1,2],"data":[1]}`, 2, true},
		{`{"DATAS":[1],"DAT":[1]}`, 0, true},
		{`{"x":{"DATA":[1,2]}}`, 0, true}, // still only the top level

		// A matching key that holds something else makes the body uncountable, but the arrays
		// of the other matching keys are still counted: a parser may bind one of them.
		{`{"data":` + recordsArray(1000) + `,"DATA":"x"}`, 1000, false},
		{`{"DATA":"x","data":` + recordsArray(1000) + `}`, 1000, false},
		{`{"data":[1,2],"Data":null,"DATA":[1,2,3]}`, 3, false},
		{`{"data":{"a":[1,2,3]},"DATA":[1]}`, 1, false}, // an object's arrays are not records
		{`{"data":[1,2],"DATA":{}}x`, 0, false},         // invalid after all: nothing
		{`{"data":[1,2],"DATA":tru}`, 0, false},
		{`{"data":[1,2],"DATA":"x"`, 0, false},

		// The key's value is not an array.
		{`{"data":{}}`, 0, false},
		{`{"data":{"a":[1]}}`, 0, false},
		{`{"data":"[1,2]"}`, 0, false},
		{`{"data":null}`, 0, false},
		{`{"data":1}`, 0, false},
		{`{"data":true}`, 0, false},

		// Not an object.
		{``, 0, false},
		{" \n", 0, false},
		{`[1,2]`, 0, false},
		{`"data"`, 0, false},
		{`1`, 0, false},
		{`null`, 0, false},
		{"\xef\xbb\xbf{\"data\":[1]}", 0, false}, // byte order mark

		// Bad escapes.
		{`{"data":["\x"]}`, 0, false},
		{`{"data":["\'"]}`, 0, false},
		{`{"data":["\U0041"]}`, 0, false},
		{`{"data":["\u12"]}`, 0, false},
		{`{"data":["\u12g4"]}`, 0, false},
		{`{"data":["\`, 0, false},
		{`{"d\a":[1]}`, 0, false},
		{`{"d\u006":[1]}`, 0, false},
		{`{"\ud800\u12":[1]}`, 0, false},
		{`{"\ud800\x":[1]}`, 0, false},

		// Bad numbers.
		{`{"data":[01]}`, 0, false},
		{`{"data":[-01]}`, 0, false},
		{`{"data":[1.]}`, 0, false},
		{`{"data":[1.e5]}`, 0, false},
		{`{"data":[-]}`, 0, false},
		{`{"data":[1e]}`, 0, false},
		{`{"data":[1e+]}`, 0, false},
		{`{"data":[1E-]}`, 0, false},
		{`{"data":[.5]}`, 0, false},
		{`{"data":[-.5]}`, 0, false},
		{`{"data":[+1]}`, 0, false},
		{`{"data":[--1]}`, 0, false},
		{`{"data":[0x10]}`, 0, false},
		{`{"data":[1_000]}`, 0, false},
		{`{"data":[NaN]}`, 0, false},
		{`{"data":[Infinity]}`, 0, false},
		{`{"data":[1 2]}`, 0, false},

		// Bad literals.
		{`{"data":[tru]}`, 0, false},
		{`{"data":[True]}`, 0, false},
		{`{"data":[nul]}`, 0, false},
		{`{"data":[nulll]}`, 0, false},
		{`{"data":[falsey]}`, 0, false},
		{`{"data":[undefined]}`, 0, false},

		// Bad structure.
		{`{"data":[1,]}`, 0, false},
		{`{"data":[1],}`, 0, false},
		{`{"data":[,1]}`, 0, false},
		{`{"data":[1,,2]}`, 0, false},
		{`{,"data":[1]}`, 0, false},
		{`{"data":[1]]`, 0, false},
		{`{"data":[1}]`, 0, false},
		{`{"data":[1]}}`, 0, false},
		{`{"data"[1]}`, 0, false},
		{`{"data"::[1]}`, 0, false},
		{`{"data":}`, 0, false},
		{`{"data"}`, 0, false},
		{`{data:[1]}`, 0, false},
		{`{'data':[1]}`, 0, false},
		{`{1:[1]}`, 0, false},
		{`{"a":1 "data":[1]}`, 0, false},
		{`{"data":[1]/*x*/}`, 0, false},
		{"{\"data\":[1]\x00}", 0, false},
		{`{"data":[1,2,x]}`, 0, false},       // malformed inside the counted array
		{`{"data":[1,2],"b":tru}`, 0, false}, // malformed after it
		{`{"data":["abc]}`, 0, false},        // unterminated string
		{`{"data":["abc`, 0, false},
		{"{\"data\":[\"a\nb\"]}", 0, false}, // control characters in strings
		{"{\"data\":[\"a\tb\"]}", 0, false},
		{"{\"data\":[\"\x00\"]}", 0, false},
		{"{\"da\x1fta\":[1]}", 0, false},
		{`{"data":[1,2]}x`, 0, false}, // trailing data
		{`{"data":[1,2]}{}`, 0, false},
		{`{"data":[1,2]} 1`, 0, false},
		{"{\"data\":[1,2]}\n\xef\xbb\xbf", 0, false},
		{"{\"data\":[1,2]}\v", 0, false}, // not JSON whitespace
	}
	for _, tt := range tests {
		n, ok := CountJSONArray([]byte(tt.give), "data")
		if n != tt.want || ok != tt.wantOK {
			t.Errorf("CountJSONArray(%s, data) = %d, %t; want %d, %t", short(tt.give), n, ok, tt.want, tt.wantOK)
		}
	}
}

// recordsArray returns an array of n records, like those of recordsBody.
func recordsArray(n int) string {
	body := recordsBody(n)
	return body[strings.Index(body, `,"data":`)+len(`,"data":`) : strings.LastIndex(body, `,"more"`)]
}

func TestCountJSONArrayNil(t *testing.T) {
	if n, ok := CountJSONArray(nil, "data"); n != 0 || ok {
		t.Errorf("CountJSONArray(nil, data) = %d, %t; want 0, false", n, ok)
	}
	if n, ok := CountJSONArray([]byte(`{"":[1,2]}`), ""); n != 2 || !ok {
		t.Errorf(`CountJSONArray({"":[1,2]}, "") = %d, %t; want 2, true`, n, ok)
	}
}

// TestCountJSONArrayKey checks that keys compare as a JSON parser decodes them.
func TestCountJSONArrayKey(t *testing.T) {
	tests := []struct {
		giveKey  string // as configured
		giveJSON string // as sent
		want     bool
	}{
		{"a/b", `"a\/b"`, true},
		{`a"b`, `"a\"b"`, true},
		{`a\b`, `"a\\b"`, true},
		{"a\tb", `"a\tb"`, true},
		{"\b\f\n\r", `"\b\f\n\r"`, true},
		{"é", `"é"`, true},
		{"é", `"\u00e9"`, true},
		{"é", `"\u00E9"`, true},
		{"é", `"e\u0301"`, false}, // no Unicode normalization
		{"日本", `"\u65e5本"`, true},
		{"😀", `"\ud83d\ude00"`, true}, // a surrogate pair is one character
		{"😀", `"😀"`, true},
		{"😀", `"\ud83d"`, false},
		{"\uFFFD", `"\ud800"`, true}, // unpaired surrogates read as U+FFFD
		{"\uFFFD", `"\udc00"`, true},
		{"\uFFFDx", `"\ud800x"`, true},
		{"\uFFFDx", `"\ud800\u0078"`, true}, // the escape after an unpaired surrogate stands alone
		{"\uFFFD\uFFFD", `"\ud800\ud800"`, true},
		{"\uFFFD😀", `"\ud800\ud83d\ude00"`, true},
		{"\uFFFD\uFFFD", `"\udc00\ud800"`, true},
		{"\uFFFD", "\"\xff\"", true}, // invalid UTF-8 reads as U+FFFD too
		{"\uFFFD\uFFFD", "\"\xed\xa0\x80\"", false},
		{"\uFFFD\uFFFD\uFFFD", "\"\xed\xa0\x80\"", true}, // an encoded surrogate is three bad bytes
		{"\xff", "\"\xff\"", false},                      // a key that is not UTF-8 never matches
		{"data", `"data"`, true},
		{"data", `"dat"`, false},
		{"data", `"datas"`, false},
		{"data", `"dat\u0061\u0000"`, false},
		{"data", `"\u0000data"`, false},
		{"", `""`, true},
		{"", `"\u0000"`, false},

		// Case is folded as encoding/json folds it: ASCII letters, and every other character
		// r as unicode.ToUpper(unicode.ToLower(r)).
		{"data", `"DATA"`, true},
		{"data", `"Data"`, true},
		{"data", `"dAtA"`, true},
		{"data", `"\u0044ata"`, true},
		{"DATA", `"data"`, true},
		{"data", `"DATA "`, false},
		{"s", `"ſ"`, true}, // U+017F LATIN SMALL LETTER LONG S
		{"S", `"\u017f"`, true},
		{"ſ", `"s"`, true},
		{"k", `"\u212a"`, true}, // U+212A KELVIN SIGN
		{"K", "\"\u212a\"", true},
		{"\u212a", `"k"`, true},
		{"id", `"ıd"`, true}, // U+0131 and U+0130: paired with I by ToUpper(ToLower(r)), not by
		{"ID", `"İD"`, true}, // simple folding; matching them too misses no parser's binding
		{"été", `"ÉTÉ"`, true},
		{"été", `"\u00c9t\u00c9"`, true},
		{"été", `"ete"`, false},
		{"σ", `"Σ"`, true},
		{"σ", `"ς"`, true}, // final sigma folds with sigma
		{"ß", `"ẞ"`, true}, // U+1E9E
		{"ß", `"ss"`, false},
		{"😀", `"😀"`, true},
		{"\uFFFD", `"\ud800"`, true},
		{"\xff", "\"\xff\"", false},
	}
	for _, tt := range tests {
		body := []byte(`{"x":[],` + tt.giveJSON + `:[1,2],"y":0}`)
		want := int64(0)
		if tt.want {
			want = 2
		}
		if n, ok := CountJSONArray(body, tt.giveKey); n != want || !ok {
			t.Errorf("CountJSONArray(%q, %q) = %d, %t; want %d, true", body, tt.giveKey, n, ok, want)
		}
		if n, ok := refCountJSONArray(body, tt.giveKey); n != want || !ok {
			t.Errorf("reference(%q, %q) = %d, %t; want %d, true (the test is wrong)", body, tt.giveKey, n, ok, want)
		}
	}
}

// TestCountJSONArrayTruncated checks that no proper prefix of a valid document counts.
func TestCountJSONArrayTruncated(t *testing.T) {
	docs := []string{
		`{"data":[{"id":1,"name":"a\"b\u00e9\ud83d\ude00","n":-1.5e+10,"t":true,"f":false,"z":null},[],{}],"x":{"data":[1]}}`,
		`{ "d\u0061ta" : [ 1 , 2 ] , "data" : [ "]" , "," ] }`,
		`{"a":[[[[{"b":[0,10,0.25,1E-3]}]]]],"data":[1]}`,
		recordsBody(3),
		string(benchBody(600)),
	}
	for _, doc := range docs {
		if _, ok := CountJSONArray([]byte(doc), "data"); !ok {
			t.Errorf("CountJSONArray(%s, data): not ok, want ok", short(doc))
		}
		for i := range len(doc) {
			if n, ok := CountJSONArray([]byte(doc[:i]), "data"); ok || n != 0 {
				t.Errorf("CountJSONArray(%s, data) = %d, %t; want 0, false", short(doc[:i]), n, ok)
			}
		}
	}
}

// nested returns {"data":…} nested depth levels deep, the top object being depth 1: arrays at
// even depths, objects {"a":…} at odd ones.
func nested(depth int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":`)
	for d := 2; d <= depth; d++ {
		if d%2 == 0 {
			b.WriteString(`[`)
		} else {
			b.WriteString(`{"a":`)
		}
	}
	if depth%2 == 1 && depth > 1 {
		b.WriteString(`1`) // the innermost object needs a value
	}
	for d := depth; d >= 2; d-- {
		if d%2 == 0 {
			b.WriteString(`]`)
		} else {
			b.WriteString(`}`)
		}
	}
	b.WriteString(`}`)
	return b.Bytes()
}

func TestCountJSONArrayDepth(t *testing.T) {
	tests := []struct {
		give   int // nesting depth
		wantOK bool
	}{
		{2, true},
		{3, true},
		{63, true},
		{64, true},
		{65, true},
		{129, true},
		{511, true},
		{512, true},
		{513, true},
		{9_999, true},
		{10_000, true}, // encoding/json's limit too
		{10_001, false},
		{100_000, false},
	}
	for _, tt := range tests {
		body := nested(tt.give)
		if got := jsonDepth(body); tt.give <= 10_000 && (got != tt.give || !json.Valid(body)) {
			t.Fatalf("nested(%d) has depth %d, valid %t (the test is wrong)", tt.give, got, json.Valid(body))
		}
		want := int64(0)
		if tt.give > 2 && tt.wantOK {
			want = 1
		}
		if n, ok := CountJSONArray(body, "data"); n != want || ok != tt.wantOK {
			t.Errorf("CountJSONArray(depth %d) = %d, %t; want %d, %t", tt.give, n, ok, want, tt.wantOK)
		}
	}

	// A wrong closer deep down is found, across the stack's word boundaries.
	for _, depth := range []int{65, 128, 129, 300, 512} {
		body := nested(depth)
		for _, at := range []int{2, 63, 64, 65, 127, 128, 200, 511} {
			i := len(body) - at // the closer of depth at
			if at > depth {
				continue
			}
			bad := bytes.Clone(body)
			bad[i] ^= ']' ^ '}'
			if n, ok := CountJSONArray(bad, "data"); ok || json.Valid(bad) {
				t.Errorf("depth %d, wrong closer at depth %d: CountJSONArray = %d, %t; json.Valid %t; want not ok",
					depth, at, n, ok, json.Valid(bad))
			}
		}
	}
}

// TestCountJSONArrayAgreesWithEncodingJSON compares CountJSONArray with refCountJSONArray on
// generated valid documents, and on corrupted copies of them, valid or not.
func TestCountJSONArrayAgreesWithEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := []string{"data", "x", "é", "Data", "😀", ""}
	var counted, refused, corruptValid int // how much each kind of case was exercised
	for range 3000 {
		doc := genDocument(r)
		if !json.Valid(doc) {
			t.Fatalf("generated document %q is not valid (the test is wrong)", doc)
		}
		for _, key := range keys {
			switch n, ok := checkAgreement(t, doc, key); {
			case ok && n > 0:
				counted++
			case !ok:
				refused++
			}
		}
		bad := bytes.Clone(doc)
		switch i := r.IntN(len(bad)); r.IntN(3) {
		case 0:
			bad = bad[:i]
		case 1:
			bad[i] = corruptions[r.IntN(len(corruptions))]
		default:
			bad = append(bad[:i], bad[i+1:]...)
		}
		if _, ok := checkAgreement(t, bad, "data"); ok {
			corruptValid++
		}
	}
	if counted < 1000 || refused < 500 || corruptValid < 100 {
		t.Errorf("too few cases: %d counted, %d refused, %d valid after corruption (the generator is wrong)",
			counted, refused, corruptValid)
	}
}

// corruptions are the bytes TestCountJSONArrayAgreesWithEncodingJSON writes over a document.
const corruptions = "{}[],:\"\\ 0-.eE+atfnu\x00\x1f\xff"

// TestFoldCoversSimpleFolding checks that foldRune, ToUpper(ToLower(r)), pairs every two
// characters that Unicode simple case folding pairs (bytes.EqualFold, which encoding/json
// uses to match keys to fields), so a key encoding/json binds is never missed, and that it
// pairs no others than İ (U+0130) and ı (U+0131) with I.
func TestFoldCoversSimpleFolding(t *testing.T) {
	extra := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if utf16.IsSurrogate(r) {
			continue
		}
		for o := unicode.SimpleFold(r); o != r; o = unicode.SimpleFold(o) {
			if foldRune(o) != foldRune(r) {
				t.Errorf("%U and %U fold alike for bytes.EqualFold, but foldRune gives %U and %U", r, o, foldRune(r), foldRune(o))
			}
		}
		if f := foldRune(r); f != r && !bytes.EqualFold([]byte(string(f)), []byte(string(r))) {
			extra++
			if r != 0x130 && r != 0x131 {
				t.Errorf("foldRune(%U) = %U, which bytes.EqualFold does not pair with it", r, f)
			}
		}
	}
	if extra != 2 {
		t.Errorf("foldRune pairs %d characters with a fold bytes.EqualFold does not, want 2 (İ and ı)", extra)
	}
}

func checkAgreement(t *testing.T, body []byte, key string) (n int64, ok bool) {
	t.Helper()
	n, ok = CountJSONArray(body, key)
	if wantN, wantOK := refCountJSONArray(body, key); n != wantN || ok != wantOK {
		t.Errorf("CountJSONArray(%q, %q) = %d, %t; encoding/json says %d, %t", body, key, n, ok, wantN, wantOK)
	}
	return n, ok
}

// refCountJSONArray is what CountJSONArray must return for a body no deeper than maxDepth,
// computed with encoding/json. It walks the top-level object with a Decoder rather than
// decoding it into a map[string]json.RawMessage, because a map keeps only the last of
// duplicate keys and CountJSONArray charges for the largest over every key that matches.
func refCountJSONArray(body []byte, key string) (n int64, ok bool) {
	if !json.Valid(body) {
		return 0, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, false
	}
	ok = true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, false // not reached: the body is valid
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return 0, false // not reached
		}
		if k, _ := tok.(string); !refKeyMatches(k, key) {
			continue
		}
		var elems []json.RawMessage
		if value = bytes.TrimLeft(value, " \t\r\n"); len(value) == 0 || value[0] != '[' {
			ok = false // not countable, but the other matches still count
			continue
		}
		if err := json.Unmarshal(value, &elems); err != nil {
			return 0, false // not reached
		}
		n = max(n, int64(len(elems)))
	}
	return n, ok
}

// refKeyMatches reports whether the decoded key k matches key: as encoding/json matches a key
// to a field (bytes.EqualFold), or as the fold ToUpper(ToLower(r)) of other parsers does, which
// pairs İ and ı with I besides (TestFoldCoversSimpleFolding). A key that is not UTF-8 matches
// nothing.
func refKeyMatches(k, key string) bool {
	return utf8.ValidString(key) && (bytes.EqualFold([]byte(k), []byte(key)) || refFold(k) == refFold(key))
}

// jsonDepth returns the deepest nesting of objects and arrays in valid JSON.
func jsonDepth(body []byte) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// Pieces for genDocument, each valid JSON.
var (
	genKeys = []string{
		`"data"`, `"d\u0061ta"`, `"\u0064\u0061\u0074\u0061"`, `"dat\"a"`, `"Data"`, `"data "`,
		`"DATA"`, `"dAtA"`, `"\u0044ata"`, `"X"`, `"É"`, `"\u00c9"`,
		`"x"`, `"\u0078"`, `"é"`, `"\u00e9"`, `"\ud83d\ude00"`, `"😀"`, `"\ud800"`, `""`, `"a\/b"`,
	}
	genNumbers = []string{
		"0", "-0", "7", "-12", "3.25", "-0.5", "1e9", "1E-9", "2.5e+3", "0e0", "123456789012345678901234567890",
	}
	genStrings = []string{
		`""`, `"plain"`, `"]"`, `","`, `"{"`, `"\""`, `"\\"`, `"\\\""`, `"\/\b\f\n\r\t"`,
		`"\u0000\u001f\uffff"`, `"\ud800"`, "\"\xff\xfe\"", `"Müller"`, `"],[{\"data\":[1,2]}"`,
	}
	genSpaces = []string{"", "", "", " ", "\n  ", "\t", "\r\n"}
)

// genDocument returns a random valid JSON object, with keys that decode to "data" and other
// keys in several spellings, some repeated.
func genDocument(r *rand.Rand) []byte {
	b := genSpace(r, nil)
	b = append(b, '{')
	for i := range r.IntN(5) {
		if i > 0 {
			b = append(b, ',')
		}
		b = genSpace(r, b)
		b = append(b, genKeys[r.IntN(len(genKeys))]...)
		b = genSpace(r, b)
		b = append(b, ':')
		b = genSpace(r, b)
		if r.IntN(4) > 0 {
			b = genArray(r, b, 1)
		} else {
			b = genValue(r, b, 1)
		}
		b = genSpace(r, b)
	}
	b = append(b, '}')
	return genSpace(r, b)
}

func genValue(r *rand.Rand, b []byte, depth int) []byte {
	k := r.IntN(10)
	if depth > 5 {
		k = r.IntN(6)
	}
	switch k {
	case 0:
		return append(b, []string{"true", "false", "null"}[r.IntN(3)]...)
	case 1, 2:
		return append(b, genNumbers[r.IntN(len(genNumbers))]...)
	case 3, 4, 5:
		return append(b, genStrings[r.IntN(len(genStrings))]...)
	case 6, 7:
		return genArray(r, b, depth+1)
	default:
		b = append(b, '{')
		for i := range r.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = genSpace(r, b)
			b = append(b, genKeys[r.IntN(len(genKeys))]...)
			b = append(b, ':')
			b = genValue(r, b, depth+1)
			b = genSpace(r, b)
		}
		return append(b, '}')
	}
}

func genArray(r *rand.Rand, b []byte, depth int) []byte {
	b = append(b, '[')
	b = genSpace(r, b)
	n := r.IntN(5)
	if depth == 1 && r.IntN(10) == 0 {
		n = 45 + r.IntN(10) // around the 1-per-50 boundary
	}
	for i := range n {
		if i > 0 {
			b = append(b, ',')
			b = genSpace(r, b)
		}
		b = genValue(r, b, depth)
		b = genSpace(r, b)
	}
	return append(b, ']')
}

func genSpace(r *rand.Rand, b []byte) []byte {
	return append(b, genSpaces[r.IntN(len(genSpaces))]...)
}

func TestCountJSONArrayAllocs(t *testing.T) {
	body := benchBody(64 << 10)
	keyed := []byte(`{"\ud83d\ude00":[1],"d\u0061ta":[2],"\ud800\u0078":[],"\xff":[],"é":[],"DATA":[1],"\u0044ata":"x","ſ":[],"\u212a":[]}`)
	allocs := testing.AllocsPerRun(100, func() {
		CountJSONArray(body, "data")
		CountJSONArray(keyed, "data")
		CountJSONArray(keyed, "😀")
		CountJSONArray(keyed, "S")
		CountJSONArray(keyed, "\u212a")
		CountJSONArray(keyed, "É")
	})
	if allocs != 0 {
		t.Errorf("CountJSONArray allocates %v times per run, want 0", allocs)
	}
}

func TestCountQueryList(t *testing.T) {
	tests := []struct {
		give string
		want int64
	}{
		{"ids=1,2,3", 3},
		{"ids=1%2C2", 2},
		{"ids=1%2c2", 2},
		{"ids=1", 1},
		{"ids=", 0},
		{"ids", 0},
		{"ids=,,1,", 1},
		{"ids=,", 0},
		{"ids=%2C%2C", 0},
		{"ids=+,%20,1", 1},     // whitespace only is empty
		{"ids=%09,%0A,%0d", 0}, // any ASCII whitespace
		{"ids=+1+,+2", 2},      // padded elements still count
		{"ids=%C2%A0", 1},      // non-ASCII space is a record
		{"i%64s=1,2", 2},       // the name is decoded
		{"id%73=1&%69ds=2", 2}, // both spellings count
		{"IDS=1,2", 2},         // names match without regard to case,
		{"Ids=1&iDs=2", 2},     // as frameworks that bind them case-insensitively read them
		{"I%44s=1,2", 2},       // decoded first
		{"%49ds=1,2", 2},
		{"%C4%B1ds=1", 1},       // U+0131 folds to I
		{"ids+=1", 0},           // "ids "
		{"x=1&ids=4;ids=5", 2},  // '&' and ';' separate
		{"ids=1,2&ids=3", 3},    // repeats add up
		{"ids=1,2&ids=&ids", 2}, // empty repeats add nothing
		{"&&ids=1&&;", 1},
		{"ids=1=2,3", 2},   // the value runs to the next separator
		{"ids=%zz,%2", 2},  // malformed escapes are literal
		{"ids=1%252C2", 1}, // a double-escaped comma is not a separator
		{"ids=a+b,c", 2},   // '+' is a space inside an element
		{"ids=%C3%A9,%E6", 2},
		{"x=ids%3D1,2", 0},
		{"xids=1&idsx=1", 0},
		{"", 0},
		{"x=1", 0},
		{"ids=" + strings.Repeat("7,", 999) + "7", 1000},

		// The list forms frameworks bind: a name followed by one bracketed index, decoded.
		{"ids[]=1&ids[]=2", 2},
		{"ids[0]=1&ids[1]=2,3", 3},
		{"ids[]=1,2,3", 3},
		{"ids%5B%5D=1&ids%5b%5d=2", 2},
		{"ids[%5D=1&ids%5B]=2", 2},
		{"ids[x y]=1&ids[+]=2&ids[%20]=3", 3},
		{"IDS[]=1&Ids[0]=2", 2},
		{"IDS=1,2&ids[]=3&ids[1]=4", 4},
		{"ids[]", 0},
		{"ids[]=", 0},
		{"ids[a][b]=1", 0}, // nested: not a list of ids
		{"ids[[]]=1", 0},
		{"ids[]]=1", 0},
		{"ids[=1", 0},
		{"ids]=1", 0},
		{"ids[]x=1", 0},
		{"ids []=1", 0},
		{"xids[]=1", 0},
		{"[]ids=1", 0},
	}
	for _, tt := range tests {
		if got := CountQueryList(tt.give, "ids"); got != tt.want {
			t.Errorf("CountQueryList(%s, ids) = %d, want %d", short(tt.give), got, tt.want)
		}
	}
}

func TestCountQueryListAllocs(t *testing.T) {
	query := "fields=a,b&i%64s=1%2C2,3;ids=" + strings.Repeat("12345,", 500) + "+&ids"
	forms := "IDS=1&I%44s=2&ids[]=3&ids%5B0%5D=4&%C4%B1ds[x]=5&ids[a][b]=6&%E2%84%AAey=7"
	allocs := testing.AllocsPerRun(100, func() {
		CountQueryList(query, "ids")
		CountQueryList(forms, "ids")
		CountQueryList(forms, "key")
	})
	if allocs != 0 {
		t.Errorf("CountQueryList allocates %v times per run, want 0", allocs)
	}
}
