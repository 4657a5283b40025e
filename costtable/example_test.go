package costtable_test

import (
	"fmt"

	"github.com/creditgate/creditgate/costtable"
)

func ExampleTable_Match() {
	tbl, err := costtable.Builtin("zoho-crm")
	if err != nil {
		panic(err)
	}
	for _, r := range []struct{ method, path, query string }{
		{"GET", "/crm/v2/Leads", "cvid=4150868000000087501"},
		{"GET", "/crm/v2/Leads", ""},
		{"GET", "/crm/v3/Leads/deleted", ""},
		{"POST", "/crm/bulk/v2/write", ""},
	} {
		rule := tbl.Match(r.method, r.path, r.query)
		fmt.Println(r.method, r.path, r.query, "->", rule.Name, rule.Cost)
	}
	// Output:
	// GET /crm/v2/Leads cvid=4150868000000087501 -> records_cvid 3
	// GET /crm/v2/Leads  -> default 1
	// GET /crm/v3/Leads/deleted  -> deleted_records 2
	// POST /crm/bulk/v2/write  -> bulk_write_initialize 500
}

func ExampleNew() {
	_, err := costtable.New("custom", []costtable.Rule{
		{Name: "search", Method: "GET", Path: "/api/{version:v1|v2}/search", Cost: 5},
		{Name: "export", Method: "POST", Path: "/api/{version}/export/{id", Cost: 50},
		{Name: "search2", Method: "GET", Path: "/API/{v:v2|v1}/search", Cost: 5},
	}, costtable.Rule{Name: "default", Cost: 1})
	fmt.Println(err)
	// Output:
	// rules[1] "export": path "/api/{version}/export/{id": segment "{id": unbalanced braces
	// rules[2] "search2": unreachable: same method, path and query as rules[0] "search"
}
