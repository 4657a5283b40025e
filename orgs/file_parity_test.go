package orgs

import (
	"reflect"
	"testing"
)

// TestParseFileSameInBothSyntaxes feeds the same content as YAML and as JSON, laid out on
// the same lines, and wants the same orgs or the same errors.
func TestParseFileSameInBothSyntaxes(t *testing.T) {
	tests := []struct{ name, yaml, json string }{
		{
			name: "valid",
			yaml: "orgs:\n  - id: acme\n    users: 3\n    keys: [k1, \"sha256:015f7e6bc5aeaf483724089e9252cc13b50951a6b69412522765cff4d780306e\"]\n",
			json: "{\"orgs\": [\n  {\"id\": \"acme\",\n    \"users\": 3,\n    \"keys\": [\"k1\", \"sha256:015f7e6bc5aeaf483724089e9252cc13b50951a6b69412522765cff4d780306e\"]}]}\n",
		},
		{
			name: "wrong types and unknown field",
			yaml: "orgs:\n  - id: acme\n    users: \"3\"\n    colour: red\n    commercial: 1\n",
			json: "{\"orgs\": [\n  {\"id\": \"acme\",\n    \"users\": \"3\",\n    \"colour\": \"red\",\n    \"commercial\": 1}]}\n",
		},
		{
			name: "field given twice",
			yaml: "orgs:\n  - id: acme\n    users: 3\n    users: 4\n",
			json: "{\"orgs\": [\n  {\"id\": \"acme\",\n    \"users\": 3,\n    \"users\": 4}]}\n",
		},
		{
			name: "a key in another case is unknown",
			yaml: "orgs:\n  - ID: acme\n",
			json: "{\"orgs\": [\n  {\"ID\": \"acme\"}]}\n",
		},
		{
			name: "bad ID, negative count, null",
			yaml: "orgs:\n  - id: a b\n    users: -1\n    addon: null\n",
			json: "{\"orgs\": [\n  {\"id\": \"a b\",\n    \"users\": -1,\n    \"addon\": null}]}\n",
		},
		{
			name: "orgs missing",
			yaml: "{}\n",
			json: "{}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromYAML, errYAML := ParseFile([]byte(tt.yaml))
			fromJSON, errJSON := ParseFile([]byte(tt.json))
			if !reflect.DeepEqual(fromYAML, fromJSON) || errText(errYAML) != errText(errJSON) {
				t.Errorf("YAML gives %+v, %v\nJSON gives %+v, %v", fromYAML, errYAML, fromJSON, errJSON)
			}
			if (errYAML == nil) != (tt.name == "valid") {
				t.Errorf("error: %v", errYAML)
			}
		})
	}
}
