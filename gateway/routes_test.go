package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
)

const reportsTable = `name: reports
rules:
  - name: report
    method: GET
    path: /reports/*
    cost: 5
default:
  name: other
  cost: 2
`

// routesFixture is a gateway with two routes: /crm/… to one upstream priced by the CRM
// table, and reports.example/r/… to another, prefix stripped, priced by its own table.
type routesFixture struct {
	*usageFixture
	crm, reports *upstream
}

func newRoutesFixture(t *testing.T) *routesFixture {
	t.Helper()
	store, err := limiter.NewMemoryStore(limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f := &routesFixture{reports: newUpstream(t)}
	reports, err := costtable.Parse("reports", []byte(reportsTable))
	if err != nil {
		t.Fatal(err)
	}
	f.usageFixture = newUsageFixture(t, store, 24*time.Hour, func(c *Config) {
		crmURL := c.Upstream // the fixture's own upstream
		repURL, _ := url.Parse(f.reports.URL)
		c.Routes = []Route{
			{Name: "crm", PathPrefix: "/crm", Upstream: crmURL, Costs: c.Costs},
			{Name: "reports", Host: "reports.example", PathPrefix: "/r/", StripPrefix: true, Upstream: repURL, Costs: reports},
		}
	})
	f.crm = f.up
	return f
}

func (f *routesFixture) call(t *testing.T, host, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("X-Api-Key", "acme-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func TestRoutesShareOneWindow(t *testing.T) {
	f := newRoutesFixture(t)

	if resp := f.call(t, "", "/crm/v8/Leads"); resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "1" {
		t.Fatalf("crm route: %d, charged %q", resp.StatusCode, resp.Header.Get("X-Credits-Charged"))
	}
	if got := f.crm.last().URL.Path; got != "/crm/v8/Leads" {
		t.Errorf("crm upstream saw %q", got)
	}
	for _, host := range []string{"reports.example", "REPORTS.Example:8080"} {
		resp := f.call(t, host, "/r/reports/daily?x=1")
		if resp.StatusCode != 200 || resp.Header.Get("X-Credits-Charged") != "5" {
			t.Fatalf("reports route (Host %s): %d, charged %q", host, resp.StatusCode, resp.Header.Get("X-Credits-Charged"))
		}
		if got := f.reports.last().URL.RequestURI(); got != "/reports/daily?x=1" {
			t.Errorf("reports upstream saw %q, want the prefix stripped", got)
		}
	}
	if resp := f.call(t, "reports.example", "/r/other"); resp.Header.Get("X-Credits-Charged") != "2" {
		t.Errorf("reports table's default: charged %q, want 2", resp.Header.Get("X-Credits-Charged"))
	}

	// One window for the org across routes: 1 + 5 + 5 + 2.
	if got := f.windowUsed(t, "acme", 1000); got != 13 {
		t.Errorf("window holds %d, want 13", got)
	}
	h := f.hours(t, "acme")
	if h.ByRoute["crm"] != 1 || h.ByRoute["reports"] != 12 || len(h.ByRoute) != 2 {
		t.Errorf("usage by route %v, want crm 1, reports 12", h.ByRoute)
	}
	byRule := map[string]int64{}
	for _, s := range h.Slots {
		for rule, c := range s.ByRule {
			byRule[rule] += c
		}
	}
	if byRule["reports/report"] != 10 || byRule["reports/other"] != 2 || byRule["crm/default"] != 1 {
		t.Errorf("usage by rule %v", byRule)
	}
}

func TestUnknownRouteNotFound(t *testing.T) {
	f := newRoutesFixture(t)
	before := f.crm.count() + f.reports.count()
	for _, c := range []struct{ host, path string }{
		{"", "/r/reports/daily"},          // the reports route wants its host
		{"", "/crmx/v8/Leads"},            // a prefix matches whole segments
		{"reports.example", "/reports/x"}, // and its prefix
		{"other.example", "/"},
	} {
		resp := f.call(t, c.host, c.path)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 404 || !strings.Contains(string(b), `"ROUTE_NOT_FOUND"`) || resp.Header.Get("X-Credits-Charged") != "0" {
			t.Errorf("%s %s: %d %s, charged %q", c.host, c.path, resp.StatusCode, b, resp.Header.Get("X-Credits-Charged"))
		}
	}
	if n := f.crm.count() + f.reports.count(); n != before {
		t.Errorf("%d calls reached an upstream", n-before)
	}
	if got := f.windowUsed(t, "acme", 1000); got != 0 {
		t.Errorf("window holds %d, want nothing charged", got)
	}
}

func TestRouteRedirectsKeepThePrefix(t *testing.T) {
	f := newRoutesFixture(t)
	f.reports.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", f.reports.URL+"/reports/next?page=2")
		w.WriteHeader(http.StatusFound)
	}
	req, _ := http.NewRequest("GET", f.url+"/r/reports/daily", nil)
	req.Host = "reports.example"
	req.Header.Set("X-Api-Key", "acme-key")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "http://reports.example/r/reports/next?page=2"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}

	// A root-relative one names the upstream's path, which the client reaches under the prefix.
	f.reports.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/reports/next")
		w.Header().Set("Content-Location", "//elsewhere.example/x") // another host: left alone
		w.WriteHeader(http.StatusFound)
	}
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "/r/reports/next"; got != want {
		t.Errorf("root-relative Location %q, want %q", got, want)
	}
	if got := resp.Header.Get("Content-Location"); got != "//elsewhere.example/x" {
		t.Errorf("another host's Content-Location rewritten: %q", got)
	}
}

func TestSetRoutesKeepsRunningRoutesOnError(t *testing.T) {
	f := newRoutesFixture(t)
	up, _ := url.Parse(f.crm.URL)
	costs, _ := costtable.Builtin("zoho-crm")
	bad := []Route{
		{Name: "crm", Upstream: up, Costs: costs},
		{Name: "crm", Upstream: up, Costs: costs, PathPrefix: "/x"},
		{Name: "Bad Name", Costs: costs, PathPrefix: "/y"},
		{Name: "z", Upstream: up, PathPrefix: "y", StripPrefix: true},
		{Name: "w", Upstream: up, Costs: costs},
	}
	err := f.gw.SetRoutes(bad)
	if err == nil {
		t.Fatal("bad routes accepted")
	}
	for _, want := range []string{
		`routes[1] "crm": name already used by routes[0]`,
		`routes[2] "Bad Name": name must be`,
		`routes[2] "Bad Name": no upstream`,
		`routes[3] "z": no cost table`,
		`routes[3] "z": path_prefix must be`,
		`routes[4] "w": same host and path_prefix as routes[0]`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if resp := f.call(t, "reports.example", "/r/reports/x"); resp.StatusCode != 200 {
		t.Errorf("running routes lost: %d", resp.StatusCode)
	}
	// A good set takes effect for the next call.
	if err := f.gw.SetRoutes([]Route{{Name: "all", Upstream: up, Costs: costs}}); err != nil {
		t.Fatal(err)
	}
	if resp := f.call(t, "", "/anything"); resp.StatusCode != 200 {
		t.Errorf("after SetRoutes: %d", resp.StatusCode)
	}
}

func TestExplainNamesTheRoute(t *testing.T) {
	f := newRoutesFixture(t)
	admin := f.admin
	for _, c := range []struct{ body, rule, route string }{
		{`{"host":"reports.example","path":"/r/reports/daily"}`, "report", "reports"},
		{`{"path":"/crm/bulk/v8/write","method":"POST"}`, "bulk_write_initialize", "crm"},
	} {
		resp, body := do(t, "POST", admin+"/admin/v1/explain", map[string]string{"Authorization": "Bearer " + viewerToken}, c.body)
		var got explainResponse
		_ = json.Unmarshal([]byte(body), &got)
		if resp.StatusCode != 200 || got.Rule != c.rule || got.Route != c.route {
			t.Errorf("explain %s: %d %s", c.body, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "POST", admin+"/admin/v1/explain", map[string]string{"Authorization": "Bearer " + viewerToken}, `{"path":"/nowhere"}`)
	if resp.StatusCode != 404 || !strings.Contains(body, "ROUTE_NOT_FOUND") {
		t.Errorf("explain of no route: %d %s", resp.StatusCode, body)
	}
}

func TestParseRoutesFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reports.yaml"), []byte(reportsTable), 0o600); err != nil {
		t.Fatal(err)
	}
	crm, _ := costtable.Builtin("zoho-crm")
	def := RouteDefaults{Costs: crm, PreserveHost: true}
	yamlDoc := `routes:
  - name: reports
    host: reports.example
    path_prefix: /r
    strip_prefix: true
    upstream: http://127.0.0.1:9001
    cost_table_file: reports.yaml
    preserve_host: false
    timeout: 5s
  - name: crm
    upstream: https://crm.internal
`
	jsonDoc := `{"routes":[
 {"name":"reports","host":"reports.example","path_prefix":"/r","strip_prefix":true,
  "upstream":"http://127.0.0.1:9001","cost_table_file":"reports.yaml","preserve_host":false,"timeout":"5s"},
 {"name":"crm","upstream":"https://crm.internal"}]}`
	for name, doc := range map[string]string{"yaml": yamlDoc, "json": jsonDoc} {
		routes, err := ParseRoutes(dir, []byte(doc), def)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r, c := routes[0], routes[1]
		if r.Name != "reports" || r.Host != "reports.example" || r.PathPrefix != "/r" || !r.StripPrefix || r.PreserveHost ||
			r.Timeout != 5*time.Second || r.Costs.Name() != "reports" || r.Upstream.String() != "http://127.0.0.1:9001" {
			t.Errorf("%s: reports route %+v", name, r)
		}
		if c.Costs != crm || !c.PreserveHost || c.Timeout != 0 {
			t.Errorf("%s: crm route did not take the defaults: %+v", name, c)
		}
	}

	for _, c := range []struct{ doc, want string }{
		{"routes:\n  - name: a\n    upstream: http://x\n    colour: red\n", `line 4: routes[0]: unknown field "colour"`},
		{"routes:\n  - name: a\n    upstream: http://x\n  - name: b\n    upstream: http://y\n    timeout: soon\n",
			`line 4: routes[1] "b": timeout must be a positive duration`},
		{"routes:\n  - name: a\n    upstream: http://x\n    cost_table: nope\n", `line 2: routes[0] "a": cost_table: unknown cost table "nope"`},
		{"routes:\n  - name: a\n    upstream: http://x\n  - name: a\n    upstream: http://y\n    path_prefix: /p\n",
			`line 4: routes[1] "a": name already used by routes[0]`},
		{"routes:\n  - name: a\n    upstream: ftp://x\n", `line 2: routes[0] "a": upstream must be an absolute http:// or https:// URL`},
		{"routes:\n  - name: a\n    upstream: http://x\n    cost_table_file: missing.yaml\n", `line 2: routes[0] "a": cost_table_file:`},
		{"routes: []\n", "no routes"},
		{"{\"routes\": [{\"name\": \"a\", \"upstream\": \"http://x\", \"timeout\": 5}]}", `line 1: routes[0] "a": timeout must be a positive duration such as 30s, got "5"`},
		{"- a\n", "line 1: want a mapping, got a list"},
	} {
		_, err := ParseRoutes(dir, []byte(c.doc), def)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestRouteTimeout(t *testing.T) {
	slow := newUpstream(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow.handler = func(w http.ResponseWriter, r *http.Request) { <-release }
	slowURL, _ := url.Parse(slow.URL)
	f := newFixture(t, func(c *Config) {
		c.Routes = []Route{
			{Name: "slow", PathPrefix: "/slow", Upstream: slowURL, Costs: c.Costs, Timeout: 50 * time.Millisecond},
			{Name: "rest", Upstream: c.Upstream, Costs: c.Costs},
		}
	})
	resp, body := do(t, "GET", f.url+"/slow/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
	if resp.StatusCode != 504 || resp.Header.Get("X-Credits-Charged") != "0" {
		t.Errorf("slow route: %d charged %q %s, want 504 refunded", resp.StatusCode, resp.Header.Get("X-Credits-Charged"), body)
	}
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, ""); resp.StatusCode != 200 {
		t.Errorf("other route: %d", resp.StatusCode)
	}
	if got := f.used(t, "acme", 1000); got != 1 {
		t.Errorf("window holds %d, want 1 (the timed-out call refunded)", got)
	}
}

// TestPreflightRoutedAsCleaned: a preflight goes where the call it announces would go, on
// the cleaned path, never to another route's upstream outside its prefix.
func TestPreflightRoutedAsCleaned(t *testing.T) {
	f := newRoutesFixture(t)
	req, _ := http.NewRequest("OPTIONS", f.url+"/r/../crm/x", nil)
	req.Host = "reports.example"
	req.Header.Set("Origin", "https://a.example")
	req.Header.Set("Access-Control-Request-Method", "DELETE")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f.reports.count() != 0 || f.crm.count() != 1 || f.crm.last().URL.Path != "/crm/x" {
		t.Fatalf("preflight of /r/../crm/x: reports upstream %d calls, crm %d", f.reports.count(), f.crm.count())
	}
}
