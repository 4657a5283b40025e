package costtable

import (
	"fmt"
	"reflect"
	"testing"
)

// TestFilesSameInBothSyntaxes feeds the same cost table content as YAML and as JSON, laid out
// on the same lines, and wants the same result or the same errors.
func TestFilesSameInBothSyntaxes(t *testing.T) {
	tables := []struct{ name, yaml, json string }{
		{
			name: "valid, with the JSON escape \\/",
			yaml: "rules:\n  - {name: a, method: GET, path: \"/v1/a\", cost: 2}\n",
			json: "{\"rules\": [\n  {\"name\": \"a\", \"method\": \"GET\", \"path\": \"\\/v1\\/a\", \"cost\": 2}]}\n",
		},
		{
			name: "unknown field, wrong type, repeated field",
			yaml: "rules:\n  - name: a\n    coast: 1\n    cost: one\n    cost: 2\n",
			json: "{\"rules\": [\n  {\"name\": \"a\",\n    \"coast\": 1,\n    \"cost\": \"one\",\n    \"cost\": 2}]}\n",
		},
		{
			name: "a field in another case is unknown",
			yaml: "rules:\n  - {Name: a, path: /a, cost: 1}\n",
			json: "{\"rules\": [\n  {\"Name\": \"a\", \"path\": \"/a\", \"cost\": 1}]}\n",
		},
		{
			name: "negative cost",
			yaml: "rules:\n  - {name: a, method: GET, path: /a, cost: -1}\n",
			json: "{\"rules\": [\n  {\"name\": \"a\", \"method\": \"GET\", \"path\": \"/a\", \"cost\": -1}]}\n",
		},
		{
			name: "rules null",
			yaml: "rules: null\n",
			json: "{\"rules\": null}\n",
		},
	}
	for _, tt := range tables {
		t.Run("table "+tt.name, func(t *testing.T) {
			y, errY := Parse("t", []byte(tt.yaml))
			j, errJ := Parse("t", []byte(tt.json))
			if errText(errY) != errText(errJ) || (errY == nil && (!reflect.DeepEqual(y.Rules(), j.Rules()) || y.Fallback() != j.Fallback())) {
				t.Errorf("YAML gives %v\nJSON gives %v", errY, errJ)
			}
			if (errY == nil) != (tt.name[:5] == "valid") {
				t.Errorf("error: %v", errY)
			}
		})
	}
}

func errText(err error) string { return fmt.Sprint(err) }
