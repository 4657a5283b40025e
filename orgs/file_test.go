package orgs

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// validFileOrgs is testdata/files/valid.{yaml,json} in the CREDITGATE_ORGS syntax.
const validFileOrgs = "acme:edition=crm-professional,users=20,keys=k1|sha256:015f7e6bc5aeaf483724089e9252cc13b50951a6b69412522765cff4d780306e;" +
	"beta:limit=5000,keys=k3;" +
	"desk.co:edition=desk-enterprise,agents=12,light_agents=40,addon=2500,legacy=300000,concurrency=7,keys=k4|k5;" +
	"docs_1:edition=monthly,monthly_limit=10000,additional=20000,commercial=false," +
	"keys=SHA256:B161BF9F99D6FCF2BA704708CB3E6B9BBFAAAB8899AC2B0CE407D66CF1DA7944;" +
	"bare"

func TestLoadFileMatchesParse(t *testing.T) {
	want, err := Parse(validFileOrgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 5 || want[0].Keys[1] != plainKey("k2") || want[3].Keys[0] != plainKey(secret+"-beta") {
		t.Fatalf("the CREDITGATE_ORGS string does not say what the test expects: %+v", want)
	}
	for _, name := range []string{"valid.yaml", "valid.json"} {
		t.Run(name, func(t *testing.T) {
			got, err := LoadFile(filepath.Join("testdata", "files", name))
			if err != nil {
				t.Fatal(err)
			}
			assertOrgs(t, got, want)
		})
	}
}

func TestParseFile(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []Org
	}{
		{name: "empty list", give: "orgs: []", want: nil},
		{name: "empty JSON list", give: `{"orgs": []}`, want: nil},
		{
			name: "id only, empty keys list",
			give: "orgs:\n  - id: acme\n  - id: beta\n    keys: []\n",
			want: []Org{{ID: "acme", Commercial: true}, {ID: "beta", Commercial: true}},
		},
		{
			name: "flow style YAML that starts like JSON",
			give: "{orgs: [{id: acme, users: 3, keys: [k1]}]}",
			want: []Org{{ID: "acme", Users: 3, Commercial: true, Keys: []Key{plainKey("k1")}}},
		},
		{
			name: "JSON escapes go-yaml rejects",
			give: `{"orgs": [{"id": "acme", "keys": ["` + secret + `\/a", "` + secret + `\ud83d\ude00"]}]}`,
			want: []Org{{ID: "acme", Commercial: true, Keys: []Key{plainKey(secret + "/a"), plainKey(secret + "😀")}}},
		},
		{
			name: "keys trimmed as in CREDITGATE_ORGS",
			give: "orgs:\n  - id: acme\n    keys: [\" k1 \", \"k2\\t\"]\n  - id: beta\n    keys: \" k3 | k4 \"\n",
			want: []Org{
				{ID: "acme", Commercial: true, Keys: []Key{plainKey("k1"), plainKey("k2")}},
				{ID: "beta", Commercial: true, Keys: []Key{plainKey("k3"), plainKey("k4")}},
			},
		},
		{
			name: "a key in a list may hold , and ; and =",
			give: "orgs:\n  - id: acme\n    keys: [\"" + secret + ",a;b=c\"]\n",
			want: []Org{{ID: "acme", Commercial: true, Keys: []Key{plainKey(secret + ",a;b=c")}}},
		},
		{
			name: "leading zeros and the largest integer",
			give: "orgs:\n  - {id: acme, users: 007, addon: 9223372036854775807}\n",
			want: []Org{{ID: "acme", Users: 7, Addon: 9223372036854775807, Commercial: true}},
		},
		{
			name: "YAML booleans",
			give: "orgs:\n  - {id: a, commercial: True}\n  - {id: b, commercial: FALSE}\n  - {id: c, commercial: false}\n",
			want: []Org{{ID: "a", Commercial: true}, {ID: "b"}, {ID: "c"}},
		},
		{
			name: "aliases",
			give: "orgs:\n  - id: acme\n    users: &seats 12\n    edition: &ed crm-standard\n  - id: beta\n    users: *seats\n    edition: *ed\n",
			want: []Org{
				{ID: "acme", Edition: "crm-standard", Users: 12, Commercial: true},
				{ID: "beta", Edition: "crm-standard", Users: 12, Commercial: true},
			},
		},
		{
			name: "comments, document markers, CRLF",
			give: "# orgs\r\n---\r\norgs:\r\n  - id: acme # the first\r\n    limit: 1\r\n...\r\n",
			want: []Org{{ID: "acme", Limit: 1, HasLimit: true, Commercial: true}},
		},
		{
			name: "JSON with tabs and CRLF",
			give: "{\r\n\t\"orgs\": [\r\n\t\t{\"id\": \"acme\", \"legacy\": 5}\r\n\t]\r\n}\r\n",
			want: []Org{{ID: "acme", Legacy: 5, Commercial: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile([]byte(tt.give))
			if err != nil {
				t.Fatalf("ParseFile(%q) error: %v", tt.give, err)
			}
			assertOrgs(t, got, tt.want)
		})
	}
}

// TestLoadFileInvalid: one file per problem. Every file holds keys containing secret, and no
// error may show it.
func TestLoadFileInvalid(t *testing.T) {
	const known = "(known fields: id, edition, users, agents, light_agents, limit, addon, legacy, " +
		"concurrency, monthly_limit, additional, commercial, keys, notify_thresholds, webhook_url, webhook_secret)"
	tests := []struct {
		give string
		want []string
	}{
		{
			give: "bad-negative.yaml",
			want: []string{`bad-negative.yaml: line 7: org "acme": field "users": must be a non-negative integer, got "-3"`},
		},
		{
			give: "bad-wrong-types.yaml",
			want: []string{
				`bad-wrong-types.yaml: line 3: org "acme": field "users": must be a non-negative integer, got a string "many"`,
				`bad-wrong-types.yaml: line 4: org "acme": field "agents": must be a non-negative integer, got a string "12"`,
				`bad-wrong-types.yaml: line 5: org "acme": field "light_agents": must be a non-negative integer, got a list`,
				`bad-wrong-types.yaml: line 6: org "acme": field "commercial": must be true or false, got a string "false"`,
				`bad-wrong-types.yaml: line 7: org "acme": field "edition": must be a string, got a number "2024"`,
			},
		},
		{
			give: "bad-keys-number.yaml",
			want: []string{
				`bad-keys-number.yaml: line 3: org "acme": field "keys": must be a list of strings or a string, got a number`,
				`bad-keys-number.yaml: line 7: org "beta": field "keys": key 2 must be a string, got a number`,
				`bad-keys-number.yaml: line 8: org "beta": field "keys": key 3 must be a string, got a mapping`,
				`bad-keys-number.yaml: line 10: org "gamma": field "keys": must be a list of strings or a string, got a mapping`,
			},
		},
		{
			give: "bad-unknown-field.yaml",
			want: []string{`bad-unknown-field.yaml: line 4: org "acme": unknown field "user" ` + known},
		},
		{
			give: "bad-duplicate-id.yaml",
			want: []string{`bad-duplicate-id.yaml: line 5: org "acme": defined twice (lines 2 and 5)`},
		},
		{
			give: "bad-missing-id.yaml",
			want: []string{
				`bad-missing-id.yaml: line 3: orgs[1]: missing field "id"`,
				`bad-missing-id.yaml: line 5: orgs[1]: field "users": must be a non-negative integer, got a string "x"`,
			},
		},
		{
			give: "bad-invalid-id.yaml",
			want: []string{
				`bad-invalid-id.yaml: line 2: org "a{b}": id must match [A-Za-z0-9._-]{1,64}`,
				`bad-invalid-id.yaml: line 4: orgs[0]: field "users": must be a non-negative integer, got "-1"`,
				`bad-invalid-id.yaml: line 5: orgs[1]: field "id": must be a string, got a number "42"`,
			},
		},
		{
			give: "bad-limit-zero.yaml",
			want: []string{`bad-limit-zero.yaml: line 4: org "acme": field "limit": must be at least 1, got "0"`},
		},
		{
			give: "bad-keys.yaml",
			want: []string{
				`bad-keys.yaml: line 5: org "acme": field "keys": key 2: key has the "sha256:" prefix but not 64 hex digits after it`,
				`bad-keys.yaml: line 6: org "acme": field "keys": key 3 is empty`,
				`bad-keys.yaml: line 7: org "acme": field "keys": key 4 contains "|": list each key on its own, or give a key containing "|" as sha256:<hex>`,
				`bad-keys.yaml: line 8: org "acme": field "keys": key 5: key is the SHA-256 of the empty string`,
				`bad-keys.yaml: line 10: org "beta": field "keys": key 2 is empty`,
				`bad-keys.yaml: line 10: org "beta": field "keys": key 3: key has the "sha256:" prefix but not 64 hex digits after it`,
			},
		},
		{
			give: "bad-field-twice.yaml",
			want: []string{
				`bad-field-twice.yaml: line 5: org "acme": field "users" given twice (lines 3 and 5)`,
				`bad-field-twice.yaml: line 6: org "acme": field "keys" given twice (lines 4 and 6)`,
			},
		},
		{
			give: "bad-top-level.yaml",
			want: []string{
				`bad-top-level.yaml: line 1: unknown field "org" (known fields: orgs)`,
				`bad-top-level.yaml: line 1: missing field "orgs"`,
			},
		},
		{
			give: "bad-not-a-list.yaml",
			want: []string{
				`bad-not-a-list.yaml: line 3: orgs[1]: must be a mapping of org fields, got a string`,
				`bad-not-a-list.yaml: line 4: orgs[2]: must be a mapping of org fields, got a list`,
			},
		},
		{
			give: "bad-types.json",
			want: []string{
				`bad-types.json: line 5: org "acme": field "users": must be a non-negative integer, got a string "20"`,
				`bad-types.json: line 6: org "acme": field "limit": must be a non-negative integer, got "1.5"`,
				`bad-types.json: line 7: org "acme": field "commercial": must be true or false, got a string "no"`,
				`bad-types.json: line 8: org "acme": field "keys": key 2 must be a string, got a number`,
				`bad-types.json: line 9: org "acme": unknown field "colour" ` + known,
				`bad-types.json: line 11: org "beta": field "keys": must be a list of strings or a string, got a number`,
				`bad-types.json: line 11: org "beta": field "addon": must be a non-negative integer, got null`,
			},
		},
		{
			give: "bad-syntax.json",
			want: []string{`bad-syntax.json: line 3: not valid JSON: invalid character after array element`},
		},
		{
			// go-yaml names the line where the flow sequence began, counting from 0.
			give: "bad-syntax.yaml",
			want: []string{`bad-syntax.yaml: not valid YAML or JSON: yaml: line 2: did not find expected ',' or ']'`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			path := filepath.Join("testdata", "files", tt.give)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), secret) {
				t.Fatalf("%s holds no key containing %q", tt.give, secret)
			}
			got, err := LoadFile(path)
			if err == nil {
				t.Fatalf("LoadFile = %+v, want an error", got)
			}
			if got != nil {
				t.Errorf("LoadFile returned orgs with an error: %+v", got)
			}
			assertMessages(t, err, tt.want)
		})
	}
}

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string
	}{
		{name: "empty", give: "", want: []string{`line 1: want a mapping with the field "orgs"`}},
		{name: "a list", give: "- id: acme\n", want: []string{`line 1: want a mapping with the field "orgs"`}},
		{name: "orgs null", give: "orgs:\n", want: []string{`line 1: field "orgs": must be a list of orgs, got null`}},
		{
			name: "orgs twice",
			give: "orgs: []\norgs: []\n",
			want: []string{`line 2: field "orgs" given twice`},
		},
		{
			name: "null values",
			give: "orgs:\n  - id:\n    edition: ~\n    commercial: null\n    keys:\n",
			want: []string{
				`line 2: orgs[0]: field "id": must be a string, got null`,
				`line 3: orgs[0]: field "edition": must be a string, got null`,
				`line 4: orgs[0]: field "commercial": must be true or false, got null`,
				`line 5: orgs[0]: field "keys": must be a list of strings or a string, got null`,
			},
		},
		{
			name: "integers as CREDITGATE_ORGS checks them",
			give: "orgs:\n  - id: acme\n    users: 0x10\n    agents: 1e3\n    addon: 9223372036854775808\n    legacy: true\n",
			want: []string{
				`line 3: org "acme": field "users": must be a non-negative integer, got "0x10"`,
				`line 4: org "acme": field "agents": must be a non-negative integer, got "1e3"`,
				`line 5: org "acme": field "addon": must be at most 9223372036854775807, got "9223372036854775808"`,
				`line 6: org "acme": field "legacy": must be a non-negative integer, got a boolean "true"`,
			},
		},
		{
			name: "commercial as a number",
			give: "orgs:\n  - {id: acme, commercial: 1}\n",
			want: []string{`line 2: org "acme": field "commercial": must be true or false, got a number "1"`},
		},
		{
			name: "other YAML types",
			give: "orgs:\n  - id: 2024-01-01\n    edition: !custom x\n",
			want: []string{
				`line 2: orgs[0]: field "id": must be a string, got a value tagged !!timestamp "2024-01-01"`,
				`line 3: orgs[0]: field "edition": must be a string, got a value tagged !custom "x"`,
			},
		},
		{
			name: "a second document",
			give: "orgs: []\n---\norgs: [{id: acme}]\n",
			want: []string{`not valid YAML or JSON: line 2: a second document; the file must hold one`},
		},
		{
			name: "JSON after the top-level value",
			give: "{\"orgs\": []}\n{\"orgs\": []}\n",
			want: []string{`line 2: not valid JSON: invalid character after top-level value`},
		},
		{
			name: "JSON cut short",
			give: "{\"orgs\": [\n  {\"id\": \"acme\",\n",
			want: []string{`line 2: not valid JSON: unexpected end of JSON input`},
		},
		{
			name: "JSON syntax error inside a key is located but not quoted",
			give: "{\"orgs\": [\n  {\"id\": \"acme\",\n   \"keys\": [\"" + secret + "\x01\"]}\n]}\n",
			want: []string{`line 3: not valid JSON: invalid character in string literal`},
		},
		{
			name: "JSON orgs not objects",
			give: `{"orgs": [1, "` + secret + `", null, true, [], {"keys": [["` + secret + `"], {"a": "` + secret + `"}]}], "extra": {"a": [1]}}`,
			want: []string{
				`line 1: orgs[0]: must be a mapping of org fields, got a number`,
				`line 1: orgs[1]: must be a mapping of org fields, got a string`,
				`line 1: orgs[2]: must be a mapping of org fields, got null`,
				`line 1: orgs[3]: must be a mapping of org fields, got a boolean`,
				`line 1: orgs[4]: must be a mapping of org fields, got a list`,
				`line 1: orgs[5]: missing field "id"`,
				`line 1: orgs[5]: field "keys": key 1 must be a string, got a list`,
				`line 1: orgs[5]: field "keys": key 2 must be a string, got a mapping`,
				`line 1: unknown field "extra" (known fields: orgs)`,
			},
		},
		{
			name: "JSON orgs an object",
			give: "{\n  \"orgs\": {\"id\": \"acme\"}\n}",
			want: []string{`line 2: field "orgs": must be a list of orgs, got a mapping`},
		},
		{
			name: "JSON without orgs",
			give: "\n\n{}",
			want: []string{`line 3: missing field "orgs"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile([]byte(tt.give))
			if err == nil {
				t.Fatalf("ParseFile(%q) = %+v, want an error", tt.give, got)
			}
			if got != nil {
				t.Errorf("ParseFile returned orgs with an error: %+v", got)
			}
			assertMessages(t, err, tt.want)
		})
	}
}

// TestParseFileErrorLimit: a mistake in every org is counted, but only the first 100 are
// spelt out.
func TestParseFileErrorLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("orgs:\n")
	for i := range 250 {
		b.WriteString("  - {id: org-" + strconv.Itoa(i) + ", user: 1}\n")
	}
	_, err := ParseFile([]byte(b.String()))
	msgs := errorList(err)
	if len(msgs) != 101 {
		t.Fatalf("%d messages, want 101", len(msgs))
	}
	if want := `line 101: org "org-99": unknown field "user"`; !strings.HasPrefix(msgs[99], want) {
		t.Errorf("message 100 = %q, want it to begin %q", msgs[99], want)
	}
	if want := "150 more problems not shown (250 in all)"; msgs[100] != want {
		t.Errorf("last message = %q, want %q", msgs[100], want)
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join("testdata", "files", "missing.yaml"))
	if !os.IsNotExist(err) {
		t.Fatalf("error = %v, want a not-exist error", err)
	}
}

// TestLoadFile100k loads 100,000 orgs from JSON and YAML, as BenchmarkLoadFile100k does,
// and checks that both give the same orgs and a working Directory.
func TestLoadFile100k(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads two files of 100,000 orgs")
	}
	jsonPath, yamlPath := writeBigFiles(t, t.TempDir(), manyOrgs)
	fromJSON, err := LoadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := LoadFile(yamlPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromJSON) != manyOrgs {
		t.Fatalf("%d orgs, want %d", len(fromJSON), manyOrgs)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Fatal("the JSON and YAML files give different orgs")
	}
	d, err := NewDirectory(fromJSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, manyOrgs / 2, manyOrgs - 1} {
		id := "org-" + strconv.Itoa(i)
		for j := range 2 {
			// The second key is configured by its digest; the caller presents the plain key.
			plain := "key-" + strconv.Itoa(i) + "-" + strconv.Itoa(j) + "-0123456789abcdefghijklmnopqrstuv"
			if o, ok := d.ByKey(plain); !ok || o.ID != id {
				t.Errorf("key %d of %s: found %v %v", j, id, o, ok)
			}
		}
	}
}

// formatFile writes orgs as a YAML file, keys in the sha256: form.
func formatFile(orgs []Org) string {
	if len(orgs) == 0 {
		return "orgs: []\n"
	}
	var b strings.Builder
	b.WriteString("orgs:\n")
	for _, o := range orgs {
		b.WriteString("  - id: " + strconv.Quote(o.ID) + "\n    edition: " + strconv.Quote(o.Edition) + "\n")
		for _, name := range fieldNames {
			if p := intField(&o, name); p != nil && (name != "limit" || o.HasLimit) {
				b.WriteString("    " + name + ": " + strconv.FormatInt(*p, 10) + "\n")
			}
		}
		b.WriteString("    commercial: " + strconv.FormatBool(o.Commercial) + "\n    keys: [")
		for i, k := range o.Keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(keyPrefix + hex.EncodeToString(k.sum[:]))
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// TestParseFileNotices: the usage notice fields of an org, in both syntaxes; wrong types are
// refused without showing the secret.
func TestParseFileNotices(t *testing.T) {
	const secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
	yaml := "orgs:\n  - id: acme\n    notify_thresholds: [80, 50]\n    webhook_url: https://hooks.example/acme\n    webhook_secret: " + secret + "\n  - id: beta\n    notify_thresholds: []\n  - id: gamma\n"
	json := `{"orgs": [{"id": "acme", "notify_thresholds": [80, 50], "webhook_url": "https://hooks.example/acme", "webhook_secret": "` + secret + `"}, {"id": "beta", "notify_thresholds": []}, {"id": "gamma"}]}`
	for _, give := range []string{yaml, json} {
		list, err := ParseFile([]byte(give))
		if err != nil {
			t.Fatal(err)
		}
		a, b, c := list[0], list[1], list[2]
		if !a.HasNotify || !reflect.DeepEqual(a.NotifyThresholds, []int64{80, 50}) || a.WebhookURL != "https://hooks.example/acme" || a.WebhookSecret != secret {
			t.Errorf("acme: %+v", a)
		}
		if !b.HasNotify || len(b.NotifyThresholds) != 0 || c.HasNotify {
			t.Errorf("beta %+v, gamma %+v: want none set for beta, the default for gamma", b, c)
		}
	}
	_, err := ParseFile([]byte("orgs:\n  - id: acme\n    notify_thresholds: [50, x]\n    webhook_secret: [" + secret + "]\n  - id: beta\n    notify_thresholds: 50\n"))
	want := []string{
		`line 3: org "acme": field "notify_thresholds": item 2 must be a non-negative integer, got a string "x"`,
		`line 4: org "acme": field "webhook_secret": must be a string, got a list`,
		`line 6: org "beta": field "notify_thresholds": must be a list of percents, got a number`,
	}
	if err == nil || errText(err) != strings.Join(want, "\n") {
		t.Fatalf("errors:\n got %v\nwant %s", err, strings.Join(want, "\n"))
	}
}
