package costtable

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadFileValid(t *testing.T) {
	y, err := LoadFile(filepath.Join("testdata", "tables", "orders.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := LoadFile(filepath.Join("testdata", "tables", "orders.json"))
	if err != nil {
		t.Fatal(err)
	}
	if y.Name() != "orders-api" || !reflect.DeepEqual(y.Rules(), j.Rules()) || y.Fallback() != j.Fallback() {
		t.Fatalf("YAML and JSON versions differ:\n%+v\n%+v", y.Rules(), j.Rules())
	}
	tests := []struct {
		method, path, query, body string
		wantRule                  string
		wantCost                  int64
	}{
		{"GET", "/v1/orders", "", "", "list_orders", 1},
		{"GET", "/v1/orders", "q=red", "", "search_orders", 5},
		{"GET", "/v1/orders/42", "", "", "get_order", 1},
		{"POST", "/v1/orders", "", `{"items":[]}`, "create_orders", 1},
		{"POST", "/v1/orders", "", `{"items":[` + strings.Repeat(`{},`, 25) + `{}]}`, "create_orders", 2},
		{"POST", "/v1/orders", "", `{"items":[`, "create_orders", 40}, // truncated: the rule's cost
		{"POST", "/v1/orders/cancel", "ids=1,2,3", "", "cancel_orders", 1},
		{"POST", "/v1/exports/2026/11", "", "", "export", 200},
		{"DELETE", "/v1/orders/42", "", "", "other", 2},
	}
	for _, tt := range tests {
		r := y.Match(tt.method, tt.path, tt.query)
		cost, _, _ := r.Charge(tt.query, []byte(tt.body))
		if r.Name != tt.wantRule || cost != tt.wantCost {
			t.Errorf("%s %s?%s: rule %s cost %d, want %s %d", tt.method, tt.path, tt.query, r.Name, cost, tt.wantRule, tt.wantCost)
		}
	}
}

// TestLoadFileInvalid: one file per problem; each error names the line, the rule and the
// problem.
func TestLoadFileInvalid(t *testing.T) {
	tests := []struct {
		give string
		want []string
	}{
		{"bad-unknown-field.yaml", []string{"bad-unknown-field.yaml", "line 5", `rules[0] "list_orders"`, `unknown field "coast"`}},
		{"bad-zero-per.yaml", []string{"line 6", `rules[1] "create_orders"`, "per"}},
		{"bad-template.yaml", []string{"line 2", `rules[0] "get_order"`, "unbalanced"}},
		{"bad-unreachable.yaml", []string{"line 6", `rules[1] "list_orders_again"`, "unreachable", `"list_orders"`}},
		{"bad-wrong-type.yaml", []string{"line 5", `rules[0] "list_orders"`, "cost", "integer", `"one"`}},
		{"bad-top-level.yaml", []string{"line 1", `unknown field "rule"`}},
		{"bad-syntax.json", []string{"bad-syntax.json", "not valid YAML or JSON", "line"}},
		{"missing.yaml", []string{"missing.yaml", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			_, err := LoadFile(filepath.Join("testdata", "tables", tt.give))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	tbl, err := Parse("mine", []byte("rules:\n  - {name: a, method: GET, path: /a, cost: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Name() != "mine" || tbl.Fallback().Name != "default" || tbl.Fallback().Cost != 1 {
		t.Fatalf("name %q fallback %+v", tbl.Name(), tbl.Fallback())
	}
	if _, err := Parse("x", []byte("rules: []\ndefault: {name: d, cost: 1, per: 2, count_query: ids}\n")); err == nil ||
		!strings.Contains(err.Error(), "fixed-cost") {
		t.Fatalf("a per-record default: %v", err)
	}
}
