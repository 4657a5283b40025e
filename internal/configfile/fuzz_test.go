package configfile

import (
	"encoding/json"
	"testing"
)

// FuzzParse checks that Parse never panics, that it reads all valid JSON, and that
// DecodeJSONList accepts only what Decode reads the same way.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"items": [{"name": "a\/b", "n": 1}]}`))                // a JSON escape YAML refuses
	f.Add([]byte(`{"items": [{"name": "\ud83d\ude00"}, {"name": "x"}]}`)) // a surrogate pair
	f.Add([]byte("items:\n  - {name: a, n: 2}\n  - &x {name: b}\n  - *x\n"))
	f.Add([]byte(`{items: [{name: a}]}`)) // YAML flow style
	f.Add([]byte(`[1, 2.5e3, -0, true, null, "s", {}, []]`))
	f.Add([]byte(`{"items": [{"Name": "a", "name": "b"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse(data)
		if err != nil && IsJSON(data) && json.Valid(data) {
			t.Fatalf("Parse(%q) refused valid JSON: %v", data, err)
		}
		var items []testItem
		if DecodeJSONList(data, "items", func(i int, it *testItem) error {
			items = append(items, *it)
			return nil
		}) != nil {
			return
		}
		var d testDoc
		if _, err := Decode(data, &d); err != nil {
			t.Fatalf("DecodeJSONList accepted %q, Decode refused it: %v", data, err)
		}
		if len(d.Items) != len(items) {
			t.Fatalf("%q: %d items, Decode %d", data, len(items), len(d.Items))
		}
		for i := range items {
			a, b := items[i], d.Items[i]
			if a.Name != b.Name || (a.N == nil) != (b.N == nil) || (a.N != nil && *a.N != *b.N) {
				t.Fatalf("%q: item %d is %+v, Decode %+v", data, i, a, b)
			}
		}
	})
}
