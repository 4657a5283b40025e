package plans

import (
	"fmt"
	"reflect"
	"testing"
)

// TestEditionsFileSameInBothSyntaxes feeds the same editions content as YAML and as JSON,
// laid out on the same lines, and wants the same result or the same errors.
func TestEditionsFileSameInBothSyntaxes(t *testing.T) {
	editionFiles := []struct{ name, yaml, json string }{
		{
			name: "valid",
			yaml: "editions:\n  - {name: gold, kind: crm, base: 5, addons: true}\n",
			json: "{\"editions\": [\n  {\"name\": \"gold\", \"kind\": \"crm\", \"base\": 5, \"addons\": true}]}\n",
		},
		{
			name: "unknown field, negative, wrong type",
			yaml: "editions:\n  - name: gold\n    kind: crm\n    base: -5\n    users: 3\n    max: lots\n",
			json: "{\"editions\": [\n  {\"name\": \"gold\",\n    \"kind\": \"crm\",\n    \"base\": -5,\n    \"users\": 3,\n    \"max\": \"lots\"}]}\n",
		},
		{
			name: "not a mapping",
			yaml: "- 1\n",
			json: "[1]\n",
		},
	}
	for _, tt := range editionFiles {
		t.Run("editions "+tt.name, func(t *testing.T) {
			y, errY := ParseEditions([]byte(tt.yaml))
			j, errJ := ParseEditions([]byte(tt.json))
			if errText(errY) != errText(errJ) || !reflect.DeepEqual(y, j) {
				t.Errorf("YAML gives %v\nJSON gives %v", errY, errJ)
			}
			if (errY == nil) != (tt.name == "valid") {
				t.Errorf("error: %v", errY)
			}
		})
	}
}

func errText(err error) string { return fmt.Sprint(err) }
