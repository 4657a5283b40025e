package orgs

import (
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// secret marks every key text in these tests; no error message may contain it.
const secret = "s3cr3t"

// plainKey is the Key of a plain key, computed independently of ParseKey.
func plainKey(s string) Key { return Key{sum: sha256.Sum256([]byte(s))} }

// errorList returns the messages of the errors joined in err.
func errorList(err error) []string {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var msgs []string
	for _, e := range joined.Unwrap() {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []Org
	}{
		{
			name: "spec example",
			give: "acme:edition=crm-professional,users=20,keys=k1|k2;beta:limit=5000,keys=k3",
			want: []Org{
				{ID: "acme", Edition: "crm-professional", Users: 20, Commercial: true, Keys: []Key{plainKey("k1"), plainKey("k2")}},
				{ID: "beta", Limit: 5000, HasLimit: true, Commercial: true, Keys: []Key{plainKey("k3")}},
			},
		},
		{
			name: "every field",
			give: "acme:edition=desk-enterprise,users=1,agents=2,light_agents=3,limit=4,addon=5,legacy=6," +
				"concurrency=7,monthly_limit=8,additional=9,commercial=false,keys=" + secret + "-a",
			want: []Org{{
				ID: "acme", Edition: "desk-enterprise", Users: 1, Agents: 2, LightAgents: 3,
				Limit: 4, HasLimit: true, Addon: 5, Legacy: 6, Concurrency: 7, MonthlyLimit: 8,
				Additional: 9, Commercial: false, Keys: []Key{plainKey(secret + "-a")},
			}},
		},
		{name: "empty string", give: "", want: nil},
		{name: "only separators", give: " ; ;\t;\n", want: nil},
		{name: "id only", give: "acme", want: []Org{{ID: "acme", Commercial: true}}},
		{name: "id and colon", give: "acme:", want: []Org{{ID: "acme", Commercial: true}}},
		{
			name: "id charset and 64 chars",
			give: "A.b_c-9;" + strings.Repeat("x", 64),
			want: []Org{{ID: "A.b_c-9", Commercial: true}, {ID: strings.Repeat("x", 64), Commercial: true}},
		},
		{
			name: "whitespace everywhere",
			give: "  acme : edition = crm-free , users = 3 , keys = k1 | k2 ;\n beta\t:\tlimit=1 ",
			want: []Org{
				{ID: "acme", Edition: "crm-free", Users: 3, Commercial: true, Keys: []Key{plainKey("k1"), plainKey("k2")}},
				{ID: "beta", Limit: 1, HasLimit: true, Commercial: true},
			},
		},
		{
			name: "trailing and empty separators",
			give: ";acme:users=1,;;beta:,agents=2,,;",
			want: []Org{
				{ID: "acme", Users: 1, Commercial: true},
				{ID: "beta", Agents: 2, Commercial: true},
			},
		},
		{
			name: "values with =",
			give: "acme:keys=" + secret + "+/AB==|" + secret + "=x=y",
			want: []Org{{ID: "acme", Commercial: true, Keys: []Key{plainKey(secret + "+/AB=="), plainKey(secret + "=x=y")}}},
		},
		{
			name: "sha256 keys in lower, upper and mixed case",
			give: "acme:keys=sha256:" + hexOf(secret+"-lower") +
				"|sha256:" + strings.ToUpper(hexOf(secret+"-upper")) +
				"|SHA256:" + mixedCase(hexOf(secret+"-mixed")),
			want: []Org{{ID: "acme", Commercial: true, Keys: []Key{
				plainKey(secret + "-lower"), plainKey(secret + "-upper"), plainKey(secret + "-mixed"),
			}}},
		},
		{
			name: "edition empty, leading zeros, largest integer",
			give: "acme:edition=,users=007,addon=9223372036854775807",
			want: []Org{{ID: "acme", Users: 7, Addon: 9223372036854775807, Commercial: true}},
		},
		{
			name: "commercial spellings",
			give: "a:commercial=true;b:commercial=0;c:commercial=F;d:commercial=1",
			want: []Org{
				{ID: "a", Commercial: true}, {ID: "b", Commercial: false},
				{ID: "c", Commercial: false}, {ID: "d", Commercial: true},
			},
		},
		{
			name: "colon in a value",
			give: "acme:edition=monthly,keys=" + secret + ":pass",
			want: []Org{{ID: "acme", Edition: "monthly", Commercial: true, Keys: []Key{plainKey(secret + ":pass")}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.give)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.give, err)
			}
			assertOrgs(t, got, tt.want)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string
	}{
		{
			name: "negative integer",
			give: "acme:users=-3",
			want: []string{`org "acme": field "users": must be a non-negative integer, got "-3"`},
		},
		{
			name: "plus sign",
			give: "acme:agents=+3",
			want: []string{`org "acme": field "agents": must be a non-negative integer, got "+3"`},
		},
		{
			name: "not base 10",
			give: "acme:light_agents=0x10,addon=1_000,legacy=1.5,concurrency=1e3,monthly_limit=,additional=ten",
			want: []string{
				`org "acme": field "light_agents": must be a non-negative integer, got "0x10"`,
				`org "acme": field "addon": must be a non-negative integer, got "1_000"`,
				`org "acme": field "legacy": must be a non-negative integer, got "1.5"`,
				`org "acme": field "concurrency": must be a non-negative integer, got "1e3"`,
				`org "acme": field "monthly_limit": must be a non-negative integer, got ""`,
				`org "acme": field "additional": must be a non-negative integer, got "ten"`,
			},
		},
		{
			name: "overflow",
			give: "acme:users=9223372036854775808",
			want: []string{`org "acme": field "users": must be at most 9223372036854775807, got "9223372036854775808"`},
		},
		{
			name: "limit zero",
			give: "acme:limit=0",
			want: []string{`org "acme": field "limit": must be at least 1, got "0"`},
		},
		{
			name: "commercial not a bool",
			give: "acme:commercial=yes",
			want: []string{`org "acme": field "commercial": must be true or false, got "yes"`},
		},
		{
			name: "edition not lower-case",
			give: "acme:edition=CRM_Pro",
			want: []string{`org "acme": field "edition": must be lower-case letters, digits and "-", got "CRM_Pro"`},
		},
		{
			name: "unknown field",
			give: "acme:user=3",
			want: []string{`org "acme": unknown field "user" (known fields: edition, users, agents, light_agents, ` +
				`limit, addon, legacy, concurrency, monthly_limit, additional, commercial, keys)`},
		},
		{
			name: "field given twice",
			give: "acme:limit=1, limit=2,keys=" + secret + "1,keys=" + secret + "2",
			want: []string{
				`org "acme": field "limit" given twice`,
				`org "acme": field "keys" given twice`,
			},
		},
		{
			name: "known field without value",
			give: "acme:users",
			want: []string{`org "acme": field "users": missing "=" and value`},
		},
		{
			name: "field without =",
			give: "acme:users=1,gold",
			want: []string{`org "acme": field 2: "gold" is not field=value`},
		},
		{
			name: "field without name",
			give: "acme:=5",
			want: []string{`org "acme": field 1: missing field name before "="`},
		},
		{
			name: "missing id",
			give: "a;b; :users=1",
			want: []string{`entry 3: missing org id before ":"`},
		},
		{
			name: "invalid id still checks fields",
			give: "a{b:users=x",
			want: []string{
				`org "a{b": id must match [A-Za-z0-9._-]{1,64}`,
				`entry 1: field "users": must be a non-negative integer, got "x"`,
			},
		},
		{
			name: "id too long",
			give: strings.Repeat("x", 65),
			want: []string{`org "` + strings.Repeat("x", 64) + `"…: id must match [A-Za-z0-9._-]{1,64}`},
		},
		{
			name: "duplicate id",
			give: "acme:users=1;beta;acme:users=2",
			want: []string{`org "acme": defined twice (entries 1 and 3)`},
		},
		{
			name: "empty keys",
			give: "acme:keys=",
			want: []string{`org "acme": field "keys": key 1 is empty`},
		},
		{
			name: "empty key element",
			give: "acme:keys=" + secret + "1|| |" + secret + "2|",
			want: []string{
				`org "acme": field "keys": key 2 is empty`,
				`org "acme": field "keys": key 3 is empty`,
				`org "acme": field "keys": key 5 is empty`,
			},
		},
		{
			name: "bad sha256 keys",
			give: "acme:keys=sha256:" + secret +
				"|sha256:" + hexOf(secret)[:63] +
				"|sha256:" + hexOf(secret) + "0" +
				"|sha256:" + hexOf(secret)[:62] + "zz" +
				"|sha256:" + hexOf(""),
			want: []string{
				`org "acme": field "keys": key 1: key has the "sha256:" prefix but not 64 hex digits after it`,
				`org "acme": field "keys": key 2: key has the "sha256:" prefix but not 64 hex digits after it`,
				`org "acme": field "keys": key 3: key has the "sha256:" prefix but not 64 hex digits after it`,
				`org "acme": field "keys": key 4: key has the "sha256:" prefix but not 64 hex digits after it`,
				`org "acme": field "keys": key 5: key is the SHA-256 of the empty string`,
			},
		},
		{
			name: "key split at a comma is not shown",
			give: "acme:keys=" + secret + "A," + secret + "B," + secret + "C=D,users=1",
			want: []string{
				`org "acme": field 2 is not a known field=value ` + notShown,
				`org "acme": field 3 is not a known field=value ` + notShown,
			},
		},
		{
			name: "key split at a semicolon is not shown",
			give: "acme:keys=" + secret + "A;" + secret + "{B;" +
				"beta:keys=" + secret + "C;" + secret + "D=E;" +
				"gamma:keys=" + secret + "F," + secret + "G;" + secret + "+H;" +
				"delta:keys=k4;" + secret + "I;" + secret + "/J",
			want: []string{
				`entry 2: id must match [A-Za-z0-9._-]{1,64} ` + notShown,
				`entry 4: id must match [A-Za-z0-9._-]{1,64} ` + notShown,
				`org "gamma": field 2 is not a known field=value ` + notShown,
				`entry 6: id must match [A-Za-z0-9._-]{1,64} ` + notShown,
				`entry 9: id must match [A-Za-z0-9._-]{1,64} ` + notShown,
			},
		},
		{
			name: "fields after an org ending in keys are quoted",
			give: "acme:keys=" + secret + ";beta:limt=5000;gamma{",
			want: []string{
				`org "beta": unknown field "limt" (known fields: edition, users, agents, light_agents, ` +
					`limit, addon, legacy, concurrency, monthly_limit, additional, commercial, keys)`,
				`org "gamma{": id must match [A-Za-z0-9._-]{1,64}`,
			},
		},
		{
			name: "every problem is reported",
			give: "acme:users=x,agents=y;beta:limit=0;:;gamma:color=red",
			want: []string{
				`org "acme": field "users": must be a non-negative integer, got "x"`,
				`org "acme": field "agents": must be a non-negative integer, got "y"`,
				`org "beta": field "limit": must be at least 1, got "0"`,
				`entry 3: missing org id before ":"`,
				`org "gamma": unknown field "color" (known fields: edition, users, agents, light_agents, ` +
					`limit, addon, legacy, concurrency, monthly_limit, additional, commercial, keys)`,
			},
		},
		{
			name: "long values are cut",
			give: "acme:edition=" + strings.Repeat("X", 100),
			want: []string{`org "acme": field "edition": must be lower-case letters, digits and "-", got "` +
				strings.Repeat("X", 64) + `"…`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.give)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.give, got)
			}
			if got != nil {
				t.Errorf("Parse(%q) returned orgs with an error: %+v", tt.give, got)
			}
			assertMessages(t, err, tt.want)
		})
	}
}

// assertMessages checks that err joins exactly the messages want, in order, and that none of
// them shows key text.
func assertMessages(t *testing.T, err error, want []string) {
	t.Helper()
	got := errorList(err)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n  got  %q\n  want %q", got, want)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error shows key text: %q", err.Error())
	}
}

func assertOrgs(t *testing.T, got, want []Org) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("orgs:\n  got  %+v\n  want %+v", got, want)
	}
}

// TestParseMisspeltFieldAfterKeys: a misspelt field after keys is named (never its value),
// since a field name is far likelier there than a key fragment of lower-case letters.
func TestParseMisspeltFieldAfterKeys(t *testing.T) {
	_, err := Parse("acme:limit=5,keys=k1,colour=red")
	if err == nil || !strings.Contains(err.Error(), `org "acme": unknown field "colour"`) || strings.Contains(err.Error(), "red") {
		t.Fatalf("error = %v", err)
	}
}
