package orgs

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParseFile checks that ParseFile never panics and is deterministic, and that whatever
// it accepts is valid and reads the same back from a file and from CREDITGATE_ORGS.
func FuzzParseFile(f *testing.F) {
	// Every file in testdata/files, valid and invalid.
	paths, err := filepath.Glob(filepath.Join("testdata", "files", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// YAML flow style, which begins like JSON.
	f.Add([]byte("{orgs: [{id: a, keys: k1|k2}]}"))
	// JSON escapes, nested values and a second top-level value.
	f.Add([]byte(`{"orgs": [{"id": "a\/b", "keys": ["\ud83d\ude00", [1, {"x": []}]]}]} {}`))
	// Aliases, merge keys and tags.
	f.Add([]byte("x: &o {id: a}\norgs: [*o, {<<: *o, id: b}, !!map {id: c}]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		orgs, err := ParseFile(data)
		orgs2, err2 := ParseFile(data)
		if !reflect.DeepEqual(orgs, orgs2) || errText(err) != errText(err2) {
			t.Fatalf("ParseFile(%q) is not deterministic", data)
		}
		if err != nil {
			if orgs != nil {
				t.Fatalf("ParseFile(%q) returned orgs with an error", data)
			}
			return
		}
		seen := make(map[string]bool)
		for _, o := range orgs {
			if errs := check(&o); len(errs) > 0 || seen[o.ID] {
				t.Fatalf("ParseFile(%q) accepted an invalid org %q: %v", data, o.ID, errs)
			}
			seen[o.ID] = true
		}
		again, err := ParseFile([]byte(formatFile(orgs)))
		if err != nil || !reflect.DeepEqual(again, orgs) {
			t.Fatalf("round trip of %q through a file:\n  got  %+v (%v)\n  want %+v", data, again, err, orgs)
		}
		fromEnv, err := Parse(format(orgs))
		if err != nil || !reflect.DeepEqual(fromEnv, orgs) {
			t.Fatalf("%q through CREDITGATE_ORGS:\n  got  %+v (%v)\n  want %+v", data, fromEnv, err, orgs)
		}
	})
}

// FuzzParseFileFastPath checks that the JSON fast path accepts only what the node tree
// accepts, with the same orgs.
func FuzzParseFileFastPath(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "files", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"orgs": [{"id": "a", "ID": "b"}]}`))                   // a key in another case
	f.Add([]byte(`{"orgs": [{"id": "a", "users": 1, "users": 2}]}`))      // a repeated key
	f.Add([]byte(`{"orgs": [{"i\u0064": "a", "keys": ["k\/1", "k2"]}]}`)) // escapes
	f.Add([]byte(`{"orgs": [{"id": "a", "addon": null, "commercial": true}]}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := parseJSONFast(data)
		if !ok {
			return
		}
		slow, err := parseFileTree(data)
		if err != nil || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: the fast path gives %+v, the node tree %+v, %v", data, fast, slow, err)
		}
	})
}
