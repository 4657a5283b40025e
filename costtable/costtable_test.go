package costtable

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// precedenceRules overlap on purpose: each request in TestMatchPrecedence has several candidate
// rules, and the most specific must win whatever the order here.
var precedenceRules = []Rule{
	{Name: "files_any_rest", Method: "*", Path: "/files/*", Cost: 2},
	{Name: "files_id", Method: "GET", Path: "/files/{id}", Cost: 3},
	{Name: "files_meta", Method: "GET", Path: "/files/meta", Cost: 4},
	{Name: "files_kind", Method: "GET", Path: "/files/{kind:img|doc}", Cost: 5},
	{Name: "files_kind_wide", Method: "GET", Path: "/files/{kind:zip|img|doc}", Cost: 6},
	{Name: "files_id_raw", Method: "GET", Path: "/files/{id}/raw", Cost: 7},
	{Name: "files_meta_deep", Method: "GET", Path: "/files/meta/{x}/deep", Cost: 8},
	{Name: "files_id_v", Method: "GET", Path: "/files/{id}", Query: "v", Cost: 9},
	{Name: "files_any_id_w", Method: "*", Path: "/files/{id}", Query: "w", Cost: 12},
	{Name: "files_any_id", Method: "*", Path: "/files/{id}", Cost: 13},
	{Name: "root", Method: "GET", Path: "/", Cost: 14},
	{Name: "delete_rest", Method: "DELETE", Path: "/*", Cost: 15},
}

func newPrecedenceTable(tb testing.TB, rules []Rule) *Table {
	tb.Helper()
	tbl, err := New("precedence", rules, Rule{Name: "fallback", Cost: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return tbl
}

func TestMatchPrecedence(t *testing.T) {
	tests := []struct {
		method, path, query string
		want                string
	}{
		{"GET", "/files/meta", "", "files_meta"},         // literal beats constrained and plain parameters
		{"GET", "/files/img", "", "files_kind"},          // fewer alternatives first
		{"GET", "/files/zip", "", "files_kind_wide"},     // constrained beats plain
		{"GET", "/files/other", "", "files_id"},          // parameter beats *
		{"GET", "/files/other", "v=1", "files_id_v"},     // a satisfied query condition wins
		{"GET", "/files/other", "v=", "files_id"},        // empty value: condition fails
		{"GET", "/files/other", "v", "files_id"},         // no value: condition fails
		{"GET", "/files/other", "w=1", "files_any_id_w"}, // query condition beats exact method
		{"GET", "/files/other", "w=1&v=1", "files_id_v"}, // both hold: exact method breaks the tie
		{"POST", "/files/other", "", "files_any_id"},     // * method
		{"POST", "/files/other", "v=1", "files_any_id"},  // files_id_v is GET only
		{"GET", "/files/meta/1/deep", "", "files_meta_deep"},
		{"GET", "/files/meta/raw", "", "files_id_raw"},  // literal branch fails deeper: backtrack to {id}
		{"GET", "/files/img/raw", "", "files_id_raw"},   // constrained branch fails deeper too
		{"GET", "/files/a/b", "", "files_any_rest"},     // * takes several segments
		{"GET", "/files", "", "files_any_rest"},         // and zero
		{"PATCH", "/files/a/b/c", "", "files_any_rest"}, // a method no rule names gets the * rules
		{"GET", "/", "", "root"},
		{"GET", "", "", "root"},
		{"PUT", "/", "", "fallback"},
		{"DELETE", "/", "", "delete_rest"},
		{"DELETE", "/files/1", "", "files_any_id"}, // the literal "files" beats DELETE /*
		{"DELETE", "/x/y", "", "delete_rest"},
		{"PATCH", "/x", "", "fallback"},
		{"get", "/files/meta", "", "files_meta"}, // methods ignore case
		{"", "/files/meta", "", "files_meta"},    // empty method is GET
	}
	// Precedence must not depend on rule order.
	orders := map[string][]Rule{"given": precedenceRules, "reversed": slices.Clone(precedenceRules)}
	slices.Reverse(orders["reversed"])
	for order, rules := range orders {
		tbl := newPrecedenceTable(t, rules)
		for _, tt := range tests {
			got := tbl.Match(tt.method, tt.path, tt.query)
			if got.Name != tt.want {
				t.Errorf("%s: Match(%q, %q, %q) = %q, want %q", order, tt.method, tt.path, tt.query, got.Name, tt.want)
			}
		}
	}
}

func TestMatchPath(t *testing.T) {
	deep := "/files/meta" + strings.Repeat("/x", 2*maxSegments) + strings.Repeat("/..", 2*maxSegments)
	tests := []struct {
		give string
		want string
	}{
		{"/files/meta/", "files_meta"},
		{"//files//meta//", "files_meta"},
		{"/FILES/Meta", "files_meta"},
		{"files/meta", "files_meta"},
		{"/files/./meta/.", "files_meta"},
		{"/files/x/../meta", "files_meta"},
		{"/../../files/meta", "files_meta"},
		{"/files/meta/..", "files_any_rest"},
		{deep, "files_meta"},                                                    // resolved back past the segments Match could not keep
		{"/files/meta" + strings.Repeat("/x", 2*maxSegments), "files_any_rest"}, // too deep for any template but *
		{strings.Repeat("/x", 2*maxSegments), "fallback"},
		{"/files/\xff", "files_id"},
		{"/files/m%65ta", "files_id"}, // escapes are not decoded
	}
	tbl := newPrecedenceTable(t, precedenceRules)
	for _, tt := range tests {
		if got := tbl.Match("GET", tt.give, ""); got.Name != tt.want {
			t.Errorf("Match(GET, %q) = %q, want %q", tt.give, got.Name, tt.want)
		}
	}
}

func TestMatchQuery(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"cvid=1", true},
		{"a=1&cvid=2&b=3", true},
		{"cvid=&cvid=3", true},
		{"cvid=a=b", true},
		{"", false},
		{"cvid", false},
		{"cvid=", false},
		{"cvid=&x=1", false},
		{"CVID=1", true},     // names match without regard to case, as frameworks that bind
		{"CvId=1", true},     // them case-insensitively read them (an upper-case name must
		{"%43VID=1", true},   // not make a call cheaper)
		{"%63vid=1", true},   // decoded as the upstream's query parser will
		{"c%76id=1", true},   // (an escaped name must not make a call cheaper)
		{"c%7", false},       // malformed escapes compare literally
		{"cv%zzid=1", false}, //
		{"cvid+=1", false},   // '+' is a space
		{"a=1;cvid=2", true}, // ';' separates, as some upstreams treat it
		{"xcvid=1", false},
		{"cvidx=1", false},
		{"&&cvid=1&", true},
		{"cvid[]=1", true}, // list forms bind the parameter too
		{"cvid[0]=1", true},
		{"cvid%5B%5D=1", true},
		{"CVID[]=1", true},
		{"cvid[]=", false},
		{"cvid[a][b]=1", false},
		{"cvid[=1", false},
		{"cvid[]x=1", false},
	}
	for _, tt := range tests {
		if got := hasParam(tt.give, "cvid"); got != tt.want {
			t.Errorf("hasParam(%q, cvid) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// TestMatchQueryCase: a query condition holds whatever the case or list form of the name, in
// a table as Match walks it.
func TestMatchQueryCase(t *testing.T) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"cvid=42", "CVID=42", "Cvid=42", "%43VID=42", "cvid[]=42", "CVID[0]=42", "cvid%5B%5D=42"} {
		if r := tbl.Match("GET", "/crm/v2/Leads", q); r.Name != "records_cvid" {
			t.Errorf("GET /crm/v2/Leads?%s priced by %q, want records_cvid", q, r.Name)
		}
	}
	for _, q := range []string{"CVID=", "cvid[a][b]=42", "cvidx=42", "cvid[=42"} {
		if r := tbl.Match("GET", "/crm/v2/Leads", q); r.Name == "records_cvid" {
			t.Errorf("GET /crm/v2/Leads?%s priced by records_cvid, want another rule", q)
		}
	}
}

func TestMatchQueryAllocs(t *testing.T) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	queries := []string{"CVID=42", "x=1&C%56ID[]=42", "%C4%B1ds=1&cvid[a][b]=1&cvid%5B0%5D=2", "%E2%84%AA=1&cvid=&CVID["}
	allocs := testing.AllocsPerRun(100, func() {
		for _, q := range queries {
			tbl.Match("GET", "/crm/v2/Leads", q)
		}
	})
	if allocs != 0 {
		t.Errorf("Match with query conditions allocates %v times per run, want 0", allocs)
	}
}

// TestChargeUncountable: a body CountJSONArray cannot count costs the rule's Cost, or the
// records it saw in the arrays of matching keys if they cost more.
func TestChargeUncountable(t *testing.T) {
	r := Rule{Name: "insert", Method: "POST", Path: "/x", Per: 10, Cost: 10, CountBody: "data"}
	tests := []struct {
		body        string
		wantCost    int64
		wantRecords int64
		wantCounted bool
	}{
		{`{"data":[1,2,3]}`, 1, 3, true},
		{`{"DATA":` + recordsArray(1000) + `}`, 100, 1000, true},
		{`{"data":[1],"DATA":` + recordsArray(1000) + `}`, 100, 1000, true},
		{`{"data":` + recordsArray(1000) + `,"DATA":"x"}`, 100, 1000, false}, // more than Cost
		{`{"DATA":"x","data":` + recordsArray(1000) + `}`, 100, 1000, false},
		{`{"data":` + recordsArray(101) + `,"Data":null}`, 11, 101, false},
		{`{"data":` + recordsArray(99) + `,"Data":null}`, 10, 99, false}, // less than Cost: Cost
		{`{"data":[1],"DATA":{}}`, 10, 1, false},
		{`{"data":{}}`, 10, 0, false},
		{`{"data":` + recordsArray(1000) + `,"DATA":"x"`, 10, 0, false}, // truncated: nothing seen
		{`{"data":[1,2]`, 10, 0, false},
		{``, 1, 0, true},
	}
	for _, tt := range tests {
		cost, records, counted := r.Charge("", []byte(tt.body))
		if cost != tt.wantCost || records != tt.wantRecords || counted != tt.wantCounted {
			t.Errorf("Charge(%s) = %d, %d, %t; want %d, %d, %t", short(tt.body), cost, records, counted,
				tt.wantCost, tt.wantRecords, tt.wantCounted)
		}
	}
}

// TestChargeQueryForms: every spelling of the counted parameter is charged.
func TestChargeQueryForms(t *testing.T) {
	r := Rule{Name: "tags", Method: "POST", Path: "/x", Per: 2, Cost: 10, CountQuery: "ids"}
	tests := []struct {
		query    string
		wantCost int64
		want     int64
	}{
		{"ids=1,2", 1, 2},
		{"IDS=1,2&ids[]=3&ids[1]=4", 2, 4},
		{"I%44s=1&%49ds=2&ids%5B%5D=3", 2, 3},
		{"ids[a][b]=1,2,3", 1, 0},
	}
	for _, tt := range tests {
		cost, records, counted := r.Charge(tt.query, nil)
		if cost != tt.wantCost || records != tt.want || !counted {
			t.Errorf("Charge(%q) = %d, %d, %t; want %d, %d, true", tt.query, cost, records, counted, tt.wantCost, tt.want)
		}
	}
}

func TestNewValidation(t *testing.T) {
	ok := Rule{Name: "ok", Method: "GET", Path: "/ok/{id}", Cost: 1}
	tests := []struct {
		name string
		give Rule // added after ok, at index 1
		want string
	}{
		{"empty name", Rule{Method: "GET", Path: "/a", Cost: 1}, `rules[1] "": name is empty`},
		{"invalid name", Rule{Name: "Get-Users", Method: "GET", Path: "/a", Cost: 1}, `rules[1] "Get-Users": name must be lower-case letters, digits and _`},
		{"duplicate name", Rule{Name: "ok", Method: "GET", Path: "/a", Cost: 1}, `rules[1] "ok": name already used by rules[0]`},
		{"lower-case method", Rule{Name: "r", Method: "get", Path: "/a", Cost: 1}, `rules[1] "r": method "get" must be upper-case letters, such as GET, or *`},
		{"empty method", Rule{Name: "r", Path: "/a", Cost: 1}, `rules[1] "r": method is empty (use * for any method)`},
		{"zero cost", Rule{Name: "r", Method: "GET", Path: "/a"}, `rules[1] "r": cost must be at least 1, got 0`},
		{"negative cost", Rule{Name: "r", Method: "GET", Path: "/a", Cost: -5}, `rules[1] "r": cost must be at least 1, got -5`},
		{"empty path", Rule{Name: "r", Method: "GET", Cost: 1}, `rules[1] "r": path is empty`},
		{"relative path", Rule{Name: "r", Method: "GET", Path: "a/b", Cost: 1}, `rules[1] "r": path "a/b" must start with /`},
		{"star not last", Rule{Name: "r", Method: "GET", Path: "/a/*/b", Cost: 1}, `rules[1] "r": path "/a/*/b": * must be the last segment`},
		{"star in segment", Rule{Name: "r", Method: "GET", Path: "/a*", Cost: 1}, `rules[1] "r": path "/a*": segment "a*": * must be a whole segment`},
		{"unclosed brace", Rule{Name: "r", Method: "GET", Path: "/a/{id", Cost: 1}, `rules[1] "r": path "/a/{id": segment "{id": unbalanced braces`},
		{"unopened brace", Rule{Name: "r", Method: "GET", Path: "/a/id}", Cost: 1}, `rules[1] "r": path "/a/id}": segment "id}": unbalanced braces`},
		{"nested braces", Rule{Name: "r", Method: "GET", Path: "/a/{{id}}", Cost: 1}, `rules[1] "r": path "/a/{{id}}": segment "{{id}}": unbalanced braces`},
		{"partial parameter", Rule{Name: "r", Method: "GET", Path: "/a/x{id}", Cost: 1}, `rules[1] "r": path "/a/x{id}": segment "x{id}": a parameter must be the whole segment`},
		{"empty parameter name", Rule{Name: "r", Method: "GET", Path: "/a/{}", Cost: 1}, `rules[1] "r": path "/a/{}": segment "{}": empty parameter name`},
		{"empty constrained name", Rule{Name: "r", Method: "GET", Path: "/a/{:x|y}", Cost: 1}, `rules[1] "r": path "/a/{:x|y}": segment "{:x|y}": empty parameter name`},
		{"bad parameter name", Rule{Name: "r", Method: "GET", Path: "/a/{i-d}", Cost: 1}, `rules[1] "r": path "/a/{i-d}": segment "{i-d}": parameter name "i-d": use letters, digits and _`},
		{"duplicate parameter", Rule{Name: "r", Method: "GET", Path: "/a/{id}/{id}", Cost: 1}, `rules[1] "r": path "/a/{id}/{id}": duplicate parameter name "id"`},
		{"no alternatives", Rule{Name: "r", Method: "GET", Path: "/a/{v:}", Cost: 1}, `rules[1] "r": path "/a/{v:}": segment "{v:}": parameter "v": empty alternative`},
		{"empty alternative", Rule{Name: "r", Method: "GET", Path: "/a/{v:x||y}", Cost: 1}, `rules[1] "r": path "/a/{v:x||y}": segment "{v:x||y}": parameter "v": empty alternative`},
		{"duplicate alternative", Rule{Name: "r", Method: "GET", Path: "/a/{v:x|X}", Cost: 1}, `rules[1] "r": path "/a/{v:x|X}": segment "{v:x|X}": parameter "v": duplicate alternative "x"`},
		{"dot segment", Rule{Name: "r", Method: "GET", Path: "/a/../b", Cost: 1}, `rules[1] "r": path "/a/../b": segment "..": dot segments never match (requests are matched with them resolved)`},
		{"space in literal", Rule{Name: "r", Method: "GET", Path: "/a b", Cost: 1}, `rules[1] "r": path "/a b": segment "a b": character ' ' not allowed`},
		{"bad query", Rule{Name: "r", Method: "GET", Path: "/a", Query: "cvid=1", Cost: 1}, `rules[1] "r": query parameter "cvid=1": character '=' not allowed`},
		{"too deep", Rule{Name: "r", Method: "GET", Path: strings.Repeat("/a", maxSegments+1), Cost: 1}, `rules[1] "r": path "` + strings.Repeat("/a", maxSegments+1) + `": more than 32 segments`},
		{"unreachable", Rule{Name: "r", Method: "GET", Path: "/OK/{x}/", Cost: 1}, `rules[1] "r": unreachable: same method, path and query as rules[0] "ok"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("t", []Rule{ok, tt.give}, Rule{Name: "default", Cost: 1})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New error = %v, want %q", err, tt.want)
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Index != 1 || re.Name != tt.give.Name {
				t.Errorf("New error = %#v, want a *RuleError for rules[1] %q", err, tt.give.Name)
			}
		})
	}
}

func TestNewValidationFallback(t *testing.T) {
	rules := []Rule{{Name: "ok", Method: "GET", Path: "/ok", Cost: 1}}
	tests := []struct {
		name string
		give Rule
		want string
	}{
		{"zero cost", Rule{Name: "default"}, `fallback "default": cost must be at least 1, got 0`},
		{"empty name", Rule{Cost: 1}, `fallback "": name is empty`},
		{"invalid name", Rule{Name: "Default", Cost: 1}, `fallback "Default": name must be lower-case letters, digits and _`},
		{"name taken", Rule{Name: "ok", Cost: 1}, `fallback "ok": name already used by rules[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("t", rules, tt.give)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New error = %v, want %q", err, tt.want)
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Index != -1 {
				t.Errorf("New error = %#v, want a *RuleError with Index -1", err)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New("t", []Rule{
		{Name: "a", Method: "get", Path: "/a", Cost: 0},
		{Name: "b", Method: "GET", Path: "b", Cost: 1},
		{Name: "a", Method: "GET", Path: "/c", Cost: 1},
	}, Rule{Name: "default", Cost: 1})
	if err == nil {
		t.Fatal("New = nil error, want four problems")
	}
	want := []string{
		`rules[0] "a": cost must be at least 1, got 0`,
		`rules[0] "a": method "get" must be upper-case letters, such as GET, or *`,
		`rules[1] "b": path "b" must start with /`,
		`rules[2] "a": name already used by rules[0]`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("New error =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewUnreachableWithDifferentConditions(t *testing.T) {
	// Same template, but a different method or query condition: all reachable.
	_, err := New("t", []Rule{
		{Name: "a", Method: "GET", Path: "/x/{id}", Cost: 1},
		{Name: "b", Method: "*", Path: "/x/{id}", Cost: 1},
		{Name: "c", Method: "GET", Path: "/x/{id}", Query: "q", Cost: 1},
		{Name: "d", Method: "GET", Path: "/x/{v:a|b}", Cost: 1},
		{Name: "e", Method: "GET", Path: "/x/{v:b|c}", Cost: 1},
	}, Rule{Name: "default", Cost: 1})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTableAccessors(t *testing.T) {
	tbl, err := New("custom", precedenceRules, Rule{Name: "fallback", Method: "POST", Path: "/ignored", Query: "x", Cost: 7, Heavy: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Name(); got != "custom" {
		t.Errorf("Name = %q, want custom", got)
	}
	want := Rule{Name: "fallback", Method: "*", Path: "/*", Cost: 7, Heavy: true}
	if got := tbl.Fallback(); got != want {
		t.Errorf("Fallback = %+v, want %+v", got, want)
	}
	if got := tbl.Match("POST", "/ignored", "x=1"); *got != want {
		t.Errorf("Match(POST, /ignored, x=1) = %+v, want the fallback", got)
	}
	rules := tbl.Rules()
	if !slices.Equal(rules, precedenceRules) {
		t.Errorf("Rules = %+v, want the rules given", rules)
	}
	rules[0].Cost = 1000
	if got := tbl.Rules()[0].Cost; got != precedenceRules[0].Cost {
		t.Errorf("Rules()[0].Cost after changing a copy = %d, want %d", got, precedenceRules[0].Cost)
	}
}

func TestNewEmptyTable(t *testing.T) {
	tbl, err := New("empty", nil, Rule{Name: "default", Cost: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Match("GET", "/anything", ""); got.Name != "default" || got.Cost != 2 {
		t.Errorf("Match = %+v, want the fallback", got)
	}
}

// matchRequests is a mix of hits, misses and awkward paths for the allocation test and
// benchmark.
var matchRequests = []struct{ method, path, query string }{
	{"GET", "/crm/v2/users", ""},
	{"GET", "/crm/v2.1/settings/modules/Leads", ""},
	{"GET", "/crm/v3/Leads", "cvid=123&page=2"},
	{"GET", "/crm/v3/Leads", "page=2"},
	{"POST", "/crm/bulk/v8/write", ""},
	{"POST", "/crm/v2/Leads/123/actions/convert", ""},
	{"DELETE", "/crm/v2/Leads/1", ""},
	{"get", "//CRM//V2//Leads//deleted//", ""},
	{"GET", "/crm/v2/users/../Leads/./deleted", ""},
	{"GET", strings.Repeat("/a", 100), ""},
	{"", "", ""},
}

func TestMatchAllocs(t *testing.T) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, r := range matchRequests {
			tbl.Match(r.method, r.path, r.query)
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range matchRequests {
			tbl.Match(r.method, r.path, r.query)
		}
	}
}

func BenchmarkMatchParallel(b *testing.B) {
	tbl, err := Builtin("zoho-crm")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tbl.Match("GET", "/crm/v3/Leads", "cvid=123&page=2")
		}
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("GET", "/crm/v2/Leads", "cvid=1")                      // a query condition
	f.Add("GET", "/crm/v2/Leads", "cvid=")                       // an empty value is absent
	f.Add("GET", "/crm/v2/settings/modules", "")                 // literal beats {module}
	f.Add("POST", "/crm/bulk/v2.1/write", "")                    // constrained parameter with a dot
	f.Add("get", "//CRM//v3//leads//deleted//", "")              // case and empty segments
	f.Add("POST", "/crm/bulk/v2/write/x/..", "")                 // dot segments resolve
	f.Add("POST", "/crm/bulk/v2/write;jsessionid=1", "")         // path parameters are cut off
	f.Add("POST", "/crm/v2/x/..;/..;/bulk/v2/write", "")         // "..;" resolves as ".."
	f.Add("GET", "/crm/v2/Leads", "c%76id=1")                    // escaped query name
	f.Add("GET", "/crm/v2/Leads", "a=1;cvid=2")                  // ';' separates pairs
	f.Add("GET", "/../..//./", "")                               // nothing left after resolving
	f.Add("", "", "")                                            // all empty
	f.Add("GET", "/files/meta/raw", "v=1&w=2")                   // backtracking in the overlapping table
	f.Add("DELETE", "/files/img", "w=1")                         // * method with a query condition
	f.Add("PATCH", strings.Repeat("/files", 40), "")             // deeper than Match keeps
	f.Add("GET", "/files"+strings.Repeat("/x/..", 40), "")       // deep, then resolved
	f.Add("\x00", "/crm/v2/users/\xff\xfe", "%zz=&&=&cvid=\x00") // invalid bytes everywhere
	f.Add("GET", "/crm/V2.1/USERS/{id}", "")                     // template syntax in a request
	f.Add("HEAD", "/files/meta", "")                             // HEAD without HEAD rules: as GET
	f.Add("head", "/crm/v2/Leads", "cvid=3")                     // ...in the built-in table too
	f.Add("HEAD", "/files/meta", "q=1")                          // a HEAD rule's query condition
	f.Add("HEAD", "/", "")                                       // no HEAD rule matches: GET's root
	f.Add("GET", "/crm/v2/Leads", "CVID=42")                     // an upper-case query name
	f.Add("GET", "/crm/v2/Leads", "cvid[]=42")                   // a list-form query name
	f.Add("GET", "/files/x", "V%5B0%5D=1&W[a][b]=2")             // escaped list form; a nested one
	withHead := append(slices.Clone(precedenceRules),
		Rule{Name: "head_files_rest", Method: "HEAD", Path: "/files/*", Cost: 20},
		Rule{Name: "head_meta_q", Method: "HEAD", Path: "/files/meta", Query: "q", Cost: 21},
		Rule{Name: "head_img", Method: "HEAD", Path: "/files/{kind:img|png}", Cost: 22})
	tables := []*Table{newPrecedenceTable(f, precedenceRules), newPrecedenceTable(f, withHead)}
	zoho, err := Builtin("zoho-crm")
	if err != nil {
		f.Fatal(err)
	}
	tables = append(tables, zoho)
	f.Fuzz(func(t *testing.T, method, path, query string) {
		for _, tbl := range tables {
			got := tbl.Match(method, path, query)
			if got == nil {
				t.Fatalf("%s: Match(%q, %q, %q) = nil", tbl.Name(), method, path, query)
			}
			if again := tbl.Match(method, path, query); again != got {
				t.Fatalf("%s: Match(%q, %q, %q) = %q, then %q", tbl.Name(), method, path, query, got.Name, again.Name)
			}
			if want := naiveMatch(tbl, method, path, query); got.Name != want {
				t.Fatalf("%s: Match(%q, %q, %q) = %q, want %q", tbl.Name(), method, path, query, got.Name, want)
			}
		}
	})
}

// naiveMatch is the precedence of the package documentation written out directly: it ranks
// every rule that matches and picks the best, with no trie. Match must agree with it.
func naiveMatch(tbl *Table, method, path, query string) string {
	if method == "" {
		method = "GET"
	}
	if asciiUpper(method) == "HEAD" {
		// A rule naming HEAD that matches prices it; else the GET's price.
		if r := naiveBest(tbl, func(r Rule) bool { return r.Method == "HEAD" }, path, query); r != "" {
			return r
		}
		method = "GET"
	}
	if r := naiveBest(tbl, func(r Rule) bool { return r.Method == "*" || asciiUpper(r.Method) == asciiUpper(method) }, path, query); r != "" {
		return r
	}
	return tbl.Fallback().Name
}

// naiveBest is the best rule among those keep accepts for path and query, or "".
func naiveBest(tbl *Table, keep func(Rule) bool, path, query string) string {
	var segs []string
	for _, s := range strings.Split(path, "/") {
		s, _, _ = strings.Cut(s, ";") // path parameters are cut off
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}

	best, bestRank := "", []rank(nil)
	for _, r := range tbl.Rules() {
		if !keep(r) {
			continue
		}
		pairs := strings.FieldsFunc(query, func(c rune) bool { return c == '&' || c == ';' })
		if r.Query != "" && !slices.ContainsFunc(pairs, func(pair string) bool {
			k, v, _ := strings.Cut(pair, "=")
			return v != "" && refNamesParam(k, r.Query) // the name as CountQueryList reads it
		}) {
			continue
		}
		tmpl, err := parseTemplate(r.Path)
		if err != nil {
			panic(err)
		}
		rk, ok := rankTemplate(tmpl, segs)
		if !ok {
			continue
		}
		// Ties (same template): a query condition, then the exact method, then the query name.
		rk = append(rk, rank{kind: boolRank(r.Query == "")}, rank{kind: boolRank(r.Method == "*")}, rank{key: r.Query})
		if bestRank == nil || slices.CompareFunc(rk, bestRank, compareRank) < 0 {
			best, bestRank = r.Name, rk
		}
	}
	return best
}

// rank is one position of a template, ordered as Match tries it.
type rank struct {
	kind  int // -1 template ends here, 0 literal, 1 constrained, 2 parameter, 3 *
	nalts int
	key   string
}

func compareRank(a, b rank) int {
	if a.kind != b.kind {
		return a.kind - b.kind
	}
	if a.nalts != b.nalts {
		return a.nalts - b.nalts
	}
	return strings.Compare(a.key, b.key)
}

func rankTemplate(tmpl []segment, segs []string) ([]rank, bool) {
	var rk []rank
	for i, s := range tmpl {
		if s.kind == segRest {
			return append(rk, rank{kind: 3}), true
		}
		if i >= len(segs) {
			return nil, false
		}
		seg := asciiLower(segs[i])
		switch s.kind {
		case segLiteral:
			if seg != s.lit {
				return nil, false
			}
			rk = append(rk, rank{kind: 0})
		case segEnum:
			if !slices.Contains(s.alts, seg) {
				return nil, false
			}
			rk = append(rk, rank{kind: 1, nalts: len(s.alts), key: strings.Join(s.alts, "|")})
		case segParam:
			rk = append(rk, rank{kind: 2})
		}
	}
	if len(segs) != len(tmpl) {
		return nil, false
	}
	return append(rk, rank{kind: -1}), true
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// asciiLower and asciiUpper change ASCII letters only and keep invalid UTF-8 as it is, unlike
// strings.ToLower.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestHeadPricedAsGet: HEAD is priced as the GET of the same path unless a rule names HEAD
// for it, also in a table where some other path has a HEAD rule or a rule for any method.
func TestHeadPricedAsGet(t *testing.T) {
	tbl, err := Parse("t", []byte(`{"rules": [
		{"name": "search", "method": "GET", "path": "/v1/orders", "query": "q", "cost": 5},
		{"name": "head_health", "method": "HEAD", "path": "/v1/health", "cost": 1},
		{"name": "any_export", "method": "*", "path": "/v1/exports/*", "cost": 7},
		{"name": "get_export", "method": "GET", "path": "/v1/exports/big", "cost": 9}
	], "default": {"name": "other", "cost": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, query string
		want                string
	}{
		{"HEAD", "/v1/orders", "q=x", "search"},
		{"HEAD", "/v1/health", "", "head_health"},
		{"head", "/v1/exports/big", "", "get_export"},
		{"HEAD", "/v1/health/deep", "", "other"},
		{"HEAD", "/v1/exports/small", "", "any_export"},
		{"HEAD", "/v1/nothing", "", "other"},
		{"POST", "/v1/exports/big", "", "any_export"},
	}
	for _, tt := range tests {
		if r := tbl.Match(tt.method, tt.path, tt.query); r.Name != tt.want {
			t.Errorf("%s %s?%s priced by %q, want %q", tt.method, tt.path, tt.query, r.Name, tt.want)
		}
	}
}

// TestHeadRuleNotBypassed: a rule naming HEAD that matches prices the HEAD, however specific
// the GET or any-method rules for the path; adding a rule that does not win changes nothing.
func TestHeadRuleNotBypassed(t *testing.T) {
	base := `{"name": "head_exports", "method": "HEAD", "path": "/v1/exports/*", "cost": 1},
		{"name": "get_big", "method": "GET", "path": "/v1/exports/big", "cost": 9}`
	for _, extra := range []string{"", `, {"name": "any_big", "method": "*", "path": "/v1/exports/big", "cost": 7}`} {
		tbl, err := Parse("t", []byte(`{"rules": [`+base+extra+`], "default": {"name": "other", "cost": 2}}`))
		if err != nil {
			t.Fatal(err)
		}
		if r := tbl.Match("HEAD", "/v1/exports/big", ""); r.Name != "head_exports" {
			t.Errorf("extra %q: HEAD /v1/exports/big priced by %q, want head_exports", extra, r.Name)
		}
		if r := tbl.Match("GET", "/v1/exports/big", ""); r.Name != "get_big" {
			t.Errorf("extra %q: GET priced by %q, want get_big", extra, r.Name)
		}
	}
}
