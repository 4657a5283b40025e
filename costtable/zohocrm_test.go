package costtable

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestZohoCRM(t *testing.T) {
	type req struct{ method, path, query string }
	tests := []struct {
		give      req
		wantRule  string
		wantCost  int64
		wantHeavy bool
	}{
		{req{"GET", "/crm/v2/users", ""}, "users", 1, false},
		{req{"GET", "/crm/v8/users", "type=AllUsers"}, "users", 1, false},
		{req{"GET", "/crm/v2.1/users/4150868000000225013", ""}, "users_by_id", 1, false},
		{req{"GET", "/crm/v3/settings/roles", ""}, "roles", 1, false},
		{req{"GET", "/crm/v4/settings/roles/4150868000000026005", ""}, "roles_by_id", 1, false},
		{req{"GET", "/crm/v5/settings/profiles", ""}, "profiles", 1, false},
		{req{"GET", "/crm/v6/settings/profiles/4150868000000026011", ""}, "profiles_by_id", 1, false},
		{req{"GET", "/crm/v2/settings/modules", ""}, "modules", 1, false}, // the literal beats {module}
		{req{"GET", "/crm/v7/settings/modules/Leads", ""}, "module_metadata", 1, false},
		{req{"GET", "/crm/v2/settings/fields", "module=Leads"}, "field_metadata", 1, false},
		{req{"GET", "/crm/v8/settings/fields/4150868000000002589", "module=Leads"}, "field_metadata_by_id", 1, false},
		{req{"GET", "/crm/v3/Leads/deleted", ""}, "deleted_records", 2, false},
		{req{"GET", "/crm/v2.1/Contacts/deleted", "type=all"}, "deleted_records", 2, false},
		{req{"GET", "/crm/v2/Leads", "cvid=123"}, "records_cvid", 3, false},
		{req{"GET", "/crm/v8/Deals", "page=2&cvid=4150868000000087501"}, "records_cvid", 3, false},
		{req{"GET", "/crm/v2/Leads", ""}, "default", 1, false},
		{req{"HEAD", "/crm/v2/Leads", "cvid=123"}, "records_cvid", 3, false}, // priced as its GET
		{req{"head", "/crm/v3/Leads/deleted", ""}, "deleted_records", 2, false},
		{req{"GET", "/crm/v2/Leads", "cvid="}, "default", 1, false},
		{req{"GET", "/crm/v2/Leads/4150868000000224005", "cvid=1"}, "default", 1, false},
		{req{"POST", "/crm/v2/Leads/4150868000000224005/actions/convert", ""}, "convert_lead", 5, false},
		{req{"POST", "/crm/v8/leads/1/actions/convert", ""}, "convert_lead", 5, false},
		{req{"POST", "/crm/bulk/v2/read", ""}, "bulk_read_initialize", 50, true},
		{req{"POST", "/crm/bulk/v8/read", ""}, "bulk_read_initialize", 50, true},
		{req{"POST", "/crm/bulk/v2.1/write", ""}, "bulk_write_initialize", 500, true},
		{req{"POST", "/crm/bulk/v5/write", ""}, "bulk_write_initialize", 500, true},

		// Precedence: the literal wins, and backtracking finds {module} when it fails.
		{req{"GET", "/crm/v2/users/deleted", ""}, "users_by_id", 1, false},
		{req{"GET", "/crm/v2/settings/deleted", ""}, "deleted_records", 2, false},
		{req{"GET", "/crm/v2/users", "cvid=1"}, "users", 1, false},
		{req{"GET", "/crm/v2/settings", "cvid=1"}, "records_cvid", 3, false},

		// Case, empty and dot segments.
		{req{"GET", "/crm/v2/Leads/", "cvid=1"}, "records_cvid", 3, false},
		{req{"GET", "//crm//V2.1//LEADS//DELETED//", ""}, "deleted_records", 2, false},
		{req{"GET", "/CRM/V2/Settings/Modules", ""}, "modules", 1, false},
		{req{"post", "/crm/BULK/v3/Write", ""}, "bulk_write_initialize", 500, true},
		{req{"POST", "/crm/bulk/v3/write/x/..", ""}, "bulk_write_initialize", 500, true},
		{req{"GET", "/crm/v2/users/../Leads/./deleted", ""}, "deleted_records", 2, false},

		// Other methods and paths cost the fallback.
		{req{"POST", "/crm/v2/users", ""}, "users_write", 1, false}, // not an insert into a "users" module
		{req{"PUT", "/crm/v8/users/1", ""}, "users_write", 1, false},
		{req{"POST", "/crm/v3/coql", ""}, "coql", 1, false},
		{req{"PUT", "/crm/v2/org", ""}, "org", 1, false},
		{req{"DELETE", "/crm/v2/Leads/deleted", ""}, "default", 1, false},
		{req{"GET", "/crm/v2/Leads/1/actions/convert", ""}, "default", 1, false},
		{req{"GET", "/crm/bulk/v2/read", ""}, "default", 1, false},
		{req{"GET", "/crm/bulk/v2/read/4150868000000624001", ""}, "default", 1, false},
		{req{"POST", "/crm/bulk/v2/write/4150868000000624001", ""}, "default", 1, false},
		{req{"GET", "/crm/v9/users", ""}, "default", 1, false},
		{req{"POST", "/crm/bulk/v1/write", ""}, "default", 1, false},
		{req{"GET", "/crm/v2", ""}, "default", 1, false},
		{req{"GET", "/", ""}, "default", 1, false},

		// Per-record rules; Cost is what they charge when the records cannot be counted.
		{req{"POST", "/crm/v2/Leads", ""}, "insert_records", 10, true},
		{req{"PUT", "/crm/v2/Leads", ""}, "update_records", 10, true},
		{req{"PUT", "/crm/v2/Leads/1", ""}, "update_record", 1, false},
		{req{"POST", "/crm/v8/Leads/upsert", ""}, "upsert_records", 10, true},
		{req{"POST", "/crm/v2.1/Leads/actions/add_tags", "ids=1"}, "add_tags", 10, true},
		{req{"POST", "/crm/v3/Leads/actions/remove_tags", ""}, "remove_tags_body", 10, true},
		{req{"POST", "/crm/v7/Leads/1/actions/remove_tags", ""}, "remove_tags_record", 1, false},
	}
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		got := tbl.Match(tt.give.method, tt.give.path, tt.give.query)
		if got.Name != tt.wantRule || got.Cost != tt.wantCost || got.Heavy != tt.wantHeavy {
			t.Errorf("Match(%q, %q, %q) = %s (cost %d, heavy %v), want %s (cost %d, heavy %v)",
				tt.give.method, tt.give.path, tt.give.query, got.Name, got.Cost, got.Heavy, tt.wantRule, tt.wantCost, tt.wantHeavy)
		}
	}
}

func TestZohoCRMEveryRuleReachable(t *testing.T) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	// Turn each template into a request: parameters become a value they accept.
	for _, r := range tbl.Rules() {
		path := strings.NewReplacer(
			"{version:v2|v2.1|v3|v4|v5|v6|v7|v8}", "v2.1",
			"{version:v2|v2.1}", "v2",
			"{version:v3|v4|v5|v6|v7|v8}", "v3",
			"{id}", "12345",
			"{module}", "Accounts",
		).Replace(r.Path)
		query := ""
		if r.Query != "" {
			query = r.Query + "=1"
		}
		if got := tbl.Match(r.Method, path, query); got.Name != r.Name {
			t.Errorf("Match(%q, %q, %q) = %q, want %q", r.Method, path, query, got.Name, r.Name)
		}
	}
}

func TestBuiltin(t *testing.T) {
	if got, want := BuiltinNames(), []string{"zoho-crm"}; !slices.Equal(got, want) {
		t.Errorf("BuiltinNames = %q, want %q", got, want)
	}
	for _, name := range BuiltinNames() {
		a, err := Builtin(name)
		if err != nil {
			t.Fatalf("Builtin(%q): %v", name, err)
		}
		if a.Name() != name {
			t.Errorf("Builtin(%q).Name() = %q", name, a.Name())
		}
		if b, _ := Builtin(name); a != b {
			t.Errorf("Builtin(%q) compiled the table twice", name)
		}
	}
}

func TestBuiltinUnknown(t *testing.T) {
	tbl, err := Builtin("zoho-desk")
	if !errors.Is(err, ErrUnknownTable) {
		t.Fatalf("Builtin(zoho-desk) = %v, %v; want ErrUnknownTable", tbl, err)
	}
	if want := `unknown cost table "zoho-desk" (built-in tables: zoho-crm)`; err.Error() != want {
		t.Errorf("Builtin(zoho-desk) error = %q, want %q", err, want)
	}
}

// TestZohoCRMPathParameters: ";params" cannot make a call cheaper on an upstream that strips
// them (servlet containers do), and "..;" cannot hide a bulk write.
func TestZohoCRMPathParameters(t *testing.T) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give, want string
	}{
		{"/crm/bulk/v2/write;jsessionid=1", "bulk_write_initialize"},
		{"/crm/bulk;x/v2/write", "bulk_write_initialize"},
		{"/crm/v2/Leads/..;/..;/bulk/v2/write", "bulk_write_initialize"},
		{"/crm/bulk/v2/write;", "bulk_write_initialize"},
	}
	for _, tt := range tests {
		if got := tbl.Match("POST", tt.give, "").Name; got != tt.want {
			t.Errorf("Match(POST, %q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestZohoCRMPerRecord prices every per-record row of the reference table, for each API
// version, at the record counts around its steps.
func TestZohoCRMPerRecord(t *testing.T) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	body := func(key string, n int) []byte {
		var b strings.Builder
		b.WriteString(`{"` + key + `":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"id":"` + strconv.Itoa(i) + `"}`)
		}
		b.WriteString(`],"trigger":["workflow"]}`)
		return []byte(b.String())
	}
	ids := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = strconv.Itoa(5_000_000 + i)
		}
		return "ids=" + strings.Join(s, ",")
	}
	per10 := map[int]int64{0: 1, 1: 1, 10: 1, 11: 2, 49: 5, 50: 5, 51: 6, 1000: 100}
	per50 := map[int]int64{0: 1, 1: 1, 10: 1, 11: 1, 49: 1, 50: 1, 51: 2, 1000: 20}
	type row struct {
		method, path string
		rule         string
		bodyKey      string // count in the body under this key…
		query        bool   // …or in ?ids=
		want         map[int]int64
	}
	for _, v := range []string{"v2", "v2.1", "v3", "v4", "v5", "v6", "v7", "v8"} {
		crm := "/crm/" + v
		rows := []row{
			{"POST", crm + "/Leads", "insert_records", "data", false, per10},
			{"PUT", crm + "/Contacts", "update_records", "data", false, per10},
			{"PUT", crm + "/Contacts/4150868000000224005", "update_record", "data", false, per10},
			{"POST", crm + "/Deals/upsert", "upsert_records", "data", false, per10},
		}
		for _, action := range []string{"add_tags", "remove_tags"} {
			if v == "v2" || v == "v2.1" {
				rows = append(rows, row{"POST", crm + "/Leads/actions/" + action, action, "", true, per50})
			} else {
				rows = append(rows, row{"POST", crm + "/Leads/actions/" + action, action + "_body", "ids", false, per50})
			}
		}
		for _, r := range rows {
			for n, want := range r.want {
				var (
					query string
					b     []byte
				)
				if r.query {
					query = "tag_names=vip&" + ids(n)
				} else {
					b = body(r.bodyKey, n)
				}
				rule := tbl.Match(r.method, r.path, query)
				got, records, counted := rule.Charge(query, b)
				if rule.Name != r.rule || got != want || records != int64(n) || !counted {
					t.Errorf("%s %s with %d records: rule %s cost %d (records %d, counted %v); want %s %d",
						r.method, r.path, n, rule.Name, got, records, counted, r.rule, want)
				}
			}
		}
		// One record's tags: one credit, whatever the body.
		if r := tbl.Match("POST", crm+"/Leads/42/actions/add_tags", ""); r.Name != "add_tags_record" {
			t.Errorf("%s single-record tags: rule %s", v, r.Name)
		}
	}
}

// TestZohoCRMFallbackCosts: a body the counter cannot read costs the largest batch.
func TestZohoCRMFallbackCosts(t *testing.T) {
	tbl, _ := Builtin("zoho-crm")
	tests := []struct {
		method, path string
		body         string
		want         int64
	}{
		{"POST", "/crm/v2/Leads", `{"data":[{},{}`, 10},     // truncated
		{"POST", "/crm/v2/Leads", `{"data":{"a":1}}`, 10},   // wrong type
		{"POST", "/crm/v2/Leads", `[{"data":[]}]`, 10},      // not an object
		{"POST", "/crm/v2/Leads", `{"dat":[1,2,3]}`, 1},     // no records
		{"POST", "/crm/v2/Leads", ``, 1},                    // no body
		{"PUT", "/crm/v2/Leads/1", `nonsense`, 1},           // one record's update
		{"POST", "/crm/v3/Leads/actions/add_tags", `{`, 10}, // truncated tags
		{"POST", "/crm/v2/Leads", strings.Repeat("[", 600) + strings.Repeat("]", 600), 10},
	}
	for _, tt := range tests {
		r := tbl.Match(tt.method, tt.path, "")
		if got, _, _ := r.Charge("", []byte(tt.body)); got != tt.want {
			t.Errorf("%s %s %.20q: cost %d, want %d", tt.method, tt.path, tt.body, got, tt.want)
		}
	}
}
