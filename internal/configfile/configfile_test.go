package configfile

import (
	"errors"
	"strings"
	"testing"
)

type testItem struct {
	Pos  Pos    `yaml:"-" json:"-"`
	Name string `yaml:"name" json:"name"`
	N    *int64 `yaml:"n" json:"n"`
}

type testDoc struct {
	Items []testItem `yaml:"items" json:"items"`
}

func TestDecodeLines(t *testing.T) {
	tests := []struct {
		name, give string
		want       []string
	}{
		{"YAML", "items:\n  - name: a\n    m: 1\n    n: x\n    n: 2\n", []string{
			`line 3: items[0]: unknown field "m" (known fields: name, n)`,
			`line 4: items[0].n: want an integer, got "x"`,
			`line 5: items[0]: field "n" given twice (lines 4 and 5)`,
		}},
		{"JSON", "{\"items\": [\n  {\"name\": \"a\",\n    \"m\": 1,\n    \"n\": \"x\",\n    \"n\": 2}]}", []string{
			`line 3: items[0]: unknown field "m" (known fields: name, n)`,
			`line 4: items[0].n: want an integer, got "x"`,
			`line 5: items[0]: field "n" given twice (lines 4 and 5)`,
		}},
		{"JSON syntax", "{\"items\": [\n  {\"name\": \"a\"}\n  {}]}", []string{`line 3: not valid JSON: invalid character after array element`}},
		{"null list", "items: ~\n", []string{`line 1: items: want a list, got null`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d testDoc
			_, err := Decode([]byte(tt.give), &d)
			if got := errorLines(err); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n  got  %q\n  want %q", got, tt.want)
			}
		})
	}
}

func errorLines(err error) []string {
	var es Errors
	if errors.As(err, &es) {
		var out []string
		for _, e := range es {
			out = append(out, e.Error())
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []string{err.Error()}
}

func TestDecodeJSONEscapesAndPositions(t *testing.T) {
	var d testDoc
	n, err := Decode([]byte("{\"items\": [\n {\"name\": \"a\\/b\\ud83d\\ude00\\\"\"}, {\"name\": \"c\"}]}"), &d)
	if err != nil {
		t.Fatal(err)
	}
	if d.Items[0].Name != "a/b😀\"" || d.Items[1].Name != "c" {
		t.Errorf("names %q %q", d.Items[0].Name, d.Items[1].Name)
	}
	if p := d.Items[1].Pos; p != (Pos{2, 34}) {
		t.Errorf("second item at %+v, want line 2 column 34", p)
	}
	if v := Lookup(n, Step{Field: "items"}, Step{Index: 1}, Step{Field: "name"}); v == nil || v.Line != 2 || v.Column != 43 {
		t.Errorf("Lookup = %+v", v)
	}
}

func TestDecodeJSONList(t *testing.T) {
	tests := []struct {
		give   string
		wantOK bool
	}{
		{`{"items": [{"name": "a", "n": 1}, {"name": "b"}]}`, true},
		{`{"items": []}`, true},
		{`{"items": [{"Name": "a"}]}`, false},              // encoding/json would match Name
		{`{"items": [{"n\u0061me": "a"}]}`, false},         // an escape in a key
		{`{"items": [{"name": "a", "name": "b"}]}`, false}, // repeated
		{`{"items": [{"name": "a", "x": 1}]}`, false},
		{`{"items": [], "other": 1}`, false},
		{`{}`, false},
		{`{"items": [{"name": "a"}]} {}`, false},
		{`{"items": [{"name": "a"`, false},
	}
	for _, tt := range tests {
		var names []string
		err := DecodeJSONList([]byte(tt.give), "items", func(i int, it *testItem) error {
			names = append(names, it.Name)
			return nil
		})
		if (err == nil) != tt.wantOK {
			t.Errorf("DecodeJSONList(%s) = %v, want ok %v", tt.give, err, tt.wantOK)
		}
	}
}
